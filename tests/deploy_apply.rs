//! `aiops deploy` against `fakeapi::FakeApi`, the stateful fake API server (a fake, not a
//! conformant server: see its module docs for what its server-side apply does), reached through
//! a kubeconfig as a user would: objects created by server-side apply as field manager `aiops`,
//! the migrations Job waited for before the Deployment, the rollout waited for, the deployment
//! recorded in the store (both backends), and failures recorded with their reason.

use crate::both_backends;
use crate::common;
use crate::fakeapi;

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitStatus;

use common::{Db, TestDb, repo};
use fakeapi::{FakeApi, RolloutBehaviour};

const DJANGO: &str = "tests/golden/deploy/django-standard.app.yaml";
const FLASK: &str = "tests/golden/deploy/flask-basic.app.yaml";

struct Deploy {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `aiops deploy CASE` with a kubeconfig for `api` and the store `db`.
async fn deploy(api: &FakeApi, db: &TestDb, dir: &Path, case: &str) -> Deploy {
    deploy_with(api, db, dir, case, &[]).await
}

/// [`deploy`] with more environment.
async fn deploy_with(
    api: &FakeApi,
    db: &TestDb,
    dir: &Path,
    case: &str,
    extra: &[(&'static str, String)],
) -> Deploy {
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let mut env = HashMap::from([
        ("AIOPS_KUBECONFIG", kubeconfig.display().to_string()),
        ("AIOPS_KUBE_CONTEXT", "fake".to_string()),
        ("AIOPS_DATABASE_URL", db.url.clone()),
        ("AIOPS_DEPLOY_POLL", "50ms".to_string()),
        ("AIOPS_DEPLOY_TIMEOUT", "10s".to_string()),
        ("AIOPS_LOG", "warn".to_string()),
    ]);
    env.extend(extra.iter().cloned());
    let case = repo().join(case).display().to_string();
    let dir = dir.to_path_buf();
    // The fake API server runs on this test's runtime: run the blocking CLI beside it.
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || common::run_cli(&dir, &["deploy", &case], &env))
            .await
            .unwrap();
    Deploy {
        status,
        stdout,
        stderr,
    }
}

async fn store(db: &TestDb) -> aiops::store::Store {
    aiops::store::Store::connect(&db.url, &aiops::store::Options::default())
        .await
        .unwrap()
}

async fn deploy_applies_every_object_waits_for_the_rollout_and_records_it(db: Db) {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(db, dir.path()).await;
    let out = deploy(&api, &db, dir.path(), DJANGO).await;
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );

    // Every object exists, applied by aiops.
    for (kind, ns, name) in [
        ("Namespace", "", "app-blog"),
        ("ServiceAccount", "app-blog", "blog"),
        ("ConfigMap", "app-blog", "blog-env"),
        ("NetworkPolicy", "app-blog", "blog"),
        ("Service", "app-blog", "blog"),
        ("Deployment", "app-blog", "blog"),
        ("Deployment", "app-blog", "blog-worker"),
        ("Ingress", "app-blog", "blog"),
        ("Certificate", "app-blog", "blog-tls"),
        ("ServiceMonitor", "app-blog", "blog"),
        ("PrometheusRule", "app-blog", "blog"),
        ("ConfigMap", "app-blog", "blog-dashboard"),
    ] {
        let obj = api
            .object(kind, ns, name)
            .unwrap_or_else(|| panic!("{kind} {ns}/{name} was not created:\n{}", out.stderr));
        assert_eq!(
            obj["metadata"]["managedFields"][0]["manager"], "aiops",
            "{kind} {name}"
        );
        assert_eq!(obj["metadata"]["managedFields"][0]["operation"], "Apply");
    }
    let jobs = api.jobs("app-blog");
    assert_eq!(jobs.len(), 1, "one migrations Job");
    let job_name = jobs[0].metadata.name.clone().unwrap();
    assert!(job_name.starts_with("blog-migrate-"), "{job_name}");

    // Every write was a server-side apply, forced, as aiops.
    let writes = api.recorded();
    let patches: Vec<_> = writes.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 13, "{patches:#?}");
    for p in &patches {
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert!(
            p.path_query.contains("fieldManager=aiops") && p.path_query.contains("force=true"),
            "{}",
            p.path_query
        );
    }
    assert!(
        writes
            .iter()
            .all(|r| matches!(r.method.as_str(), "PATCH" | "GET"))
    );
    // The Job was waited for before the Deployment was applied, and the rollout after.
    let index = |pred: &dyn Fn(&fakeapi::RecordedRequest) -> bool| {
        writes.iter().position(pred).expect("request")
    };
    let job_get =
        index(&|r| r.method == "GET" && r.path_query.ends_with(&format!("/jobs/{job_name}")));
    let dep_patch = index(&|r| {
        r.method == "PATCH"
            && r.path_query
                .starts_with("/apis/apps/v1/namespaces/app-blog/deployments/blog?")
    });
    let dep_get = writes
        .iter()
        .rposition(|r| {
            r.method == "GET"
                && r.path_query == "/apis/apps/v1/namespaces/app-blog/deployments/blog"
        })
        .expect("the rollout was read");
    assert!(
        job_get < dep_patch && dep_patch < dep_get,
        "{job_get} {dep_patch} {dep_get}"
    );

    // The controller rolled it out with the plan's resources.
    let d = api.deployment("app-blog", "blog");
    assert_eq!(d.status.unwrap().available_replicas, Some(3));
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "1Gi");
    assert!(
        out.stdout.contains("successfully rolled out"),
        "{}",
        out.stdout
    );

    // Recorded: the app and its deployment.
    let store = store(&db).await;
    let app = store.app("blog").await.unwrap().expect("app registered");
    assert_eq!(app.namespace, "app-blog");
    assert_eq!(app.created_by, "cli");
    assert_eq!(app.spec["framework"], "django");
    let deps = store.deployments("blog", "app-blog", 10).await.unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].status, "succeeded");
    assert_eq!(deps[0].version, "2024.06.1");
    // No ingress addresses are configured: the DNS check did not run, and the record says so.
    let detail = deps[0].detail.as_deref().unwrap_or_default();
    assert!(
        detail.starts_with("dns: not checked (deploy.ingress_addresses is not set); "),
        "{detail}"
    );
    assert!(
        out.stdout
            .starts_with("dns: not checked (deploy.ingress_addresses is not set)\n"),
        "{}",
        out.stdout
    );
    assert!(
        deps[0]
            .image
            .starts_with("registry.example.org/blog/web@sha256:")
    );
    assert!(deps[0].finished_at.unwrap() >= deps[0].started_at);
    store.close().await;
}
both_backends!(deploy_applies_every_object_waits_for_the_rollout_and_records_it);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_deploy_tells_the_apps_notification_channels_once() {
    // A stand-in for the team's webhook receiver, recording what it is sent.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Db::Sqlite, dir.path()).await;
    // The flask case names `notifications: [default, team-shop]`; only team-shop exists here.
    let out = deploy_telling_team_shop(&api, &db, dir.path(), &url).await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("notified team-shop: sent"),
        "{}",
        out.stdout
    );
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let event: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let text = event.to_string();
    assert!(text.contains("deploy_success"), "{text}");
    assert!(text.contains("1.4.2") && text.contains("shop"), "{text}");
    assert_recorded(&db, "deploy_success", "team-shop").await;
    server.abort();
}

/// `aiops deploy` of the flask case with one notification channel: `team-shop` (of the two its
/// spec names, `default` and `team-shop`), a webhook to `url`.
async fn deploy_telling_team_shop(api: &FakeApi, db: &TestDb, dir: &Path, url: &str) -> Deploy {
    let config = dir.join("aiops.yaml");
    std::fs::write(
        &config,
        format!("notify:\n  channels:\n    team-shop: {{type: webhook, url: \"{url}\"}}\n"),
    )
    .unwrap();
    deploy_with(
        api,
        db,
        dir,
        FLASK,
        &[("AIOPS_CONFIG", config.display().to_string())],
    )
    .await
}

/// The subject of the flask case's `deploy_failed` (its display name, its namespace).
pub const FAILED_SUBJECT: &str = "[aiops] Deploy failed: Shop \"storefront\" (app-shop)";

/// Checks that the store holds exactly one notification: `event` to `channel`.
async fn assert_recorded(db: &TestDb, event: &str, channel: &str) {
    let store = store(db).await;
    let all: Vec<(String, String)> = store
        .notifications()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.event, n.channel))
        .collect();
    store.close().await;
    assert_eq!(all, [(event.to_string(), channel.to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deploy_of_a_new_image_rolls_the_deployment_and_records_both() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Db::Sqlite, dir.path()).await;
    assert!(deploy(&api, &db, dir.path(), FLASK).await.status.success());
    let spec = std::fs::read_to_string(repo().join(FLASK))
        .unwrap()
        .replace("shop:1.4.2", "shop:1.5.0");
    let next = dir.path().join("next.app.yaml");
    std::fs::write(&next, spec).unwrap();
    let out = deploy(&api, &db, dir.path(), next.to_str().unwrap()).await;
    assert!(out.status.success(), "{}", out.stderr);
    let d = api.deployment("app-shop", "shop");
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("ghcr.io/acme/shop:1.5.0")
    );
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let store = store(&db).await;
    let versions: Vec<(String, String)> = store
        .deployments("shop", "app-shop", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.version, d.status))
        .collect();
    assert_eq!(
        versions,
        [
            ("1.5.0".to_string(), "succeeded".to_string()),
            ("1.4.2".to_string(), "succeeded".to_string())
        ]
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_prometheus_operator_fails_the_deploy_naming_it() {
    let api = FakeApi::start().await;
    api.without_group("monitoring.coreos.com");
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Db::Sqlite, dir.path()).await;
    let out = deploy(&api, &db, dir.path(), FLASK).await;
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("monitoring.coreos.com/v1 ServiceMonitor")
            && out.stderr.contains("install the Prometheus Operator"),
        "{}",
        out.stderr
    );
    let store = store(&db).await;
    let deps = store.deployments("shop", "app-shop", 10).await.unwrap();
    assert_eq!(deps[0].status, "failed");
    assert!(
        deps[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("Prometheus Operator"),
        "{deps:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_stops_the_deploy_before_the_deployment_is_touched() {
    let api = FakeApi::start().await;
    api.set_jobs_fail(true);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Db::Sqlite, dir.path()).await;
    let out = deploy(&api, &db, dir.path(), DJANGO).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("backoff limit"), "{}", out.stderr);
    assert!(
        !api.has_deployment("app-blog", "blog"),
        "the Deployment was not applied"
    );
    let store = store(&db).await;
    assert_eq!(
        store.deployments("blog", "app-blog", 1).await.unwrap()[0].status,
        "failed"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_past_its_progress_deadline_fails_the_deploy() {
    let api = FakeApi::start().await;
    api.set_rollout_behaviour("app-shop", "shop", RolloutBehaviour::Fails);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Db::Sqlite, dir.path()).await;
    let out = deploy(&api, &db, dir.path(), FLASK).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("exceeded its progress deadline"),
        "{}",
        out.stderr
    );
    let store = store(&db).await;
    let d = &store.deployments("shop", "app-shop", 1).await.unwrap()[0];
    assert_eq!(d.status, "failed");
    assert!(d.detail.as_deref().unwrap().contains("progress deadline"));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_tells_the_apps_notification_channels_which_step_failed_and_why() {
    let hooks = common::stand_ins::StandIn::start().await;
    let api = FakeApi::start().await;
    api.set_rollout_behaviour("app-shop", "shop", RolloutBehaviour::Fails);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Db::Sqlite, dir.path()).await;
    let out = deploy_telling_team_shop(&api, &db, dir.path(), &format!("{}/hook", hooks.url)).await;
    assert!(!out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("notified team-shop: sent"),
        "{}",
        out.stdout
    );
    let sent = hooks.requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let text = sent[0].webhook_text("deploy_failed", FAILED_SUBJECT);
    assert!(
        text.starts_with("Deployment 1 of Shop \"storefront\" 1.4.2 to app-shop failed: ")
            && text.contains("deploy_app failed: ")
            && text.contains("exceeded its progress deadline")
            && text.contains("GET /api/apps/shop/deployments/1"),
        "{text}"
    );
    assert_recorded(&db, "deploy_failed", "team-shop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_without_a_cluster_configured_says_how_to_configure_one() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = common::run_cli(
        dir.path(),
        &["deploy", repo().join(FLASK).to_str().unwrap()],
        &HashMap::new(),
    );
    assert!(!status.success());
    assert!(stderr.contains("AIOPS_KUBECONFIG"), "{stderr}");
    assert!(!dir.path().join("aiops.db").exists(), "no store created");
}
