//! Deployments in steps through the daemon, against `fakeapi::FakeApi` (the stateful fake API
//! server, reached through a kubeconfig as a user's daemon reaches its cluster):
//! `POST /api/apps/{name}/deploy` answers 202 with the steps, the daemon's worker runs them,
//! `GET /api/apps/{name}/deployments/{id}` shows each step's status while it runs and why one
//! failed, and a daemon that dies or stops mid-deployment leaves it failed, never running.
//! The same steps on the real control plane are in tests/real_cluster_deploy.rs.

use crate::both_backends;
use crate::common;
use crate::fakeapi;

use std::time::Duration;

use aiops::auth::Role;
use common::console::ConsoleClient;
use common::stand_ins::StandIn;
use common::wait::until;
use common::{Db, Spawn, TestApp, repo};
use fakeapi::{FakeApi, RolloutBehaviour};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn token(role: Role, apps: &[&str]) -> String {
    common::api::token(SECRET, role, apps)
}

/// The flask case (a docker app: framework and image given), as an editor registers it.
fn flask() -> String {
    std::fs::read_to_string(repo().join("tests/golden/deploy/flask-basic.app.yaml")).unwrap()
}

/// Daemon options for a deploy to `api`: its kubeconfig, fast polls and heartbeats.
fn spawn_opts(db: Db, api: &FakeApi, dir: &std::path::Path) -> Spawn {
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    Spawn::new(db)
        .env("AIOPS_JWT_SECRET", SECRET)
        .env("AIOPS_CLUSTER_STATE_FILE", "")
        .env("AIOPS_KUBECONFIG", &kubeconfig.display().to_string())
        .env("AIOPS_KUBE_CONTEXT", "fake")
        .env("AIOPS_DEPLOY_POLL", "50ms")
        .env("AIOPS_DEPLOY_TIMEOUT", "60s")
        .env("AIOPS_DEPLOY_HEARTBEAT", "200ms")
        .env("AIOPS_DEPLOY_WORKER", "true")
}

/// `(name, status, detail)` of each step of a deployment as the API shows it.
fn steps(view: &Value) -> Vec<(String, String, String)> {
    view["steps"]
        .as_array()
        .unwrap()
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

/// Polls the deployment at `location` until `pred` holds; returns what the API showed.
async fn wait_deployment(
    app: &TestApp,
    token: &str,
    location: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    until(
        what,
        Duration::from_secs(60),
        async || {
            let (status, view) = app.api_get(token, location).await;
            (status == 200 && pred(&view)).then_some(view)
        },
        || app.log_text(),
    )
    .await
}

fn finished(view: &Value) -> bool {
    matches!(view["status"].as_str(), Some("succeeded" | "failed"))
}

/// Registers the flask app and asks for its deployment; returns the 202 body and Location.
async fn register_and_deploy(app: &TestApp, editor: &str, body: Value) -> (Value, String) {
    let (status, reg) = app.api_register_app(editor, flask()).await;
    assert_eq!(status, 201, "{reg}");
    let r = app
        .client
        .post(app.url("/api/apps/shop/deploy"))
        .bearer_auth(editor)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    (r.json().await.unwrap(), location)
}

async fn an_api_deploy_answers_with_its_steps_at_once_and_the_daemon_runs_each_to_its_end(db: Db) {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_app(spawn_opts(db, &api, dir.path())).await;
    let editor = token(Role::Editor, &["app-shop"]);

    let (queued, location) = register_and_deploy(&app, &editor, json!({})).await;
    let id = queued["id"].as_i64().unwrap();
    assert_eq!(location, format!("/api/apps/shop/deployments/{id}"));
    assert_eq!(queued["requested_by"], "editor-user");
    assert_eq!(queued["image"], "ghcr.io/acme/shop:1.4.2");
    let names: Vec<String> = steps(&queued).into_iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        [
            "check_dns",
            "detect_framework",
            "create_namespace",
            "build_image",
            "deploy_app",
            "configure_ingress",
            "setup_ssl",
            "configure_monitoring",
            "setup_auto_repair"
        ]
    );

    let done = wait_deployment(
        &app,
        &editor,
        &location,
        "the deployment to finish",
        finished,
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let by_name: std::collections::HashMap<String, (String, String)> = steps(&done)
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
        "skipped",
        "dns: not checked (deploy.ingress_addresses is not set)",
    );
    is("detect_framework", "skipped", "the spec names flask");
    is("create_namespace", "succeeded", "Namespace app-shop");
    is(
        "build_image",
        "skipped",
        "a docker app runs its image ghcr.io/acme/shop:1.4.2",
    );
    is("deploy_app", "succeeded", "successfully rolled out");
    is("configure_ingress", "succeeded", "Ingress app-shop/shop");
    is("setup_ssl", "succeeded", "Certificate app-shop/shop-tls");
    is(
        "configure_monitoring",
        "succeeded",
        "PrometheusRule app-shop/shop",
    );
    is("setup_auto_repair", "succeeded", "→ restart (rule");
    for s in done["steps"].as_array().unwrap() {
        assert!(
            s["started_at"].is_string() && s["finished_at"].is_string(),
            "{s}"
        );
    }
    // What the steps applied is in the cluster, applied by aiops.
    assert!(api.has_deployment("app-shop", "shop"));
    assert!(api.object("Ingress", "app-shop", "shop").is_some());

    // The listing has it, newest first; the audit log has the request.
    let (status, list) = app.api_get(&editor, "/api/apps/shop/deployments").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["id"], id);
    let audit = app.store().await.audit_log(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "POST /api/apps/{name}/deploy"
                && e.subject == "editor-user"
                && e.status == 202),
        "{audit:#?}"
    );
}
both_backends!(an_api_deploy_answers_with_its_steps_at_once_and_the_daemon_runs_each_to_its_end);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_records_its_reason_and_the_steps_after_it_are_not_run() {
    let api = FakeApi::start().await;
    api.without_group("monitoring.coreos.com");
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_app(spawn_opts(Db::Sqlite, &api, dir.path())).await;
    let editor = token(Role::Editor, &["app-shop"]);
    let (_, location) = register_and_deploy(&app, &editor, json!({"skip_dns_check": true})).await;
    let done = wait_deployment(
        &app,
        &editor,
        &location,
        "the deployment to finish",
        finished,
    )
    .await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert_eq!(done["skip_dns_check"], true);
    let s = steps(&done);
    assert_eq!(
        (s[0].1.as_str(), s[0].2.as_str()),
        ("skipped", "dns: not checked (--skip-dns-check)")
    );
    assert_eq!(s[4].1, "succeeded", "the app rolled out before: {s:#?}");
    let (name, status, why) = &s[7];
    assert_eq!(
        (name.as_str(), status.as_str()),
        ("configure_monitoring", "failed")
    );
    assert!(
        why.contains("monitoring.coreos.com/v1 ServiceMonitor")
            && why.contains("install the Prometheus Operator"),
        "{why}"
    );
    assert_eq!((s[8].1.as_str(), s[8].2.as_str()), ("not_run", ""));
    let detail = done["detail"].as_str().unwrap();
    assert!(
        detail.contains("configure_monitoring failed: ") && detail.contains("Prometheus Operator"),
        "{detail}"
    );

    // The console's app page lists the same steps, with the reason as text.
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["app-shop"]).await;
    let page = alice.get("/ui/apps/shop").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(
            r#"<li data-step="configure_monitoring"><code>configure_monitoring</code> <span class="badge bad" data-status="failed">failed</span>"#
        ),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<li data-step="setup_auto_repair"><code>setup_auto_repair</code> <span class="badge info" data-status="not_run">not run</span></li>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("install the Prometheus Operator"));
}

/// Registers the flask app whose rollout never completes, deploys it, and waits until the
/// API shows deploy_app running after the steps before it ended: what a portal sees mid-way.
async fn deploy_until_rolling_out(app: &TestApp, api: &FakeApi, editor: &str) -> String {
    api.set_rollout_behaviour("app-shop", "shop", RolloutBehaviour::Stuck);
    let (_, location) = register_and_deploy(app, editor, json!({})).await;
    let view = wait_deployment(app, editor, &location, "deploy_app to be running", |v| {
        steps(v)[4].1 == "running"
    })
    .await;
    assert_eq!(view["status"], "running");
    let s = steps(&view);
    assert_eq!(
        s.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
        [
            "skipped",
            "skipped",
            "succeeded",
            "skipped",
            "running",
            "pending",
            "pending",
            "pending",
            "pending"
        ],
        "{view:#}"
    );
    location
}

/// A configuration whose only channel is `team-shop`, the one the flask case's spec names.
fn team_shop_channel(hooks: &StandIn) -> String {
    format!(
        "notify:\n  channels:\n    team-shop: {{type: webhook, url: \"{}/hook\"}}\n",
        hooks.url
    )
}

/// `(event, channel, body)` of every notification the daemon's store holds.
async fn notifications(app: &TestApp) -> Vec<(String, String, String)> {
    let store = app.store().await;
    let all = store
        .notifications()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.event, n.channel, n.body))
        .collect();
    store.close().await;
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_deployment_leaves_it_failed_at_its_step_once_another_looks() {
    let api = FakeApi::start().await;
    let hooks = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = spawn_opts(Db::Sqlite, &api, dir.path()).config(&team_shop_channel(&hooks));
    let mut app = TestApp::spawn(opts).await;
    let editor = token(Role::Editor, &["app-shop"]);
    let location = deploy_until_rolling_out(&app, &api, &editor).await;

    // kill -9: no chance to record anything. The next daemon finds its heartbeat stopped.
    let status = app.kill();
    assert!(!status.success());
    let opts = Spawn {
        env: app.env.clone(),
        ..Spawn::new(Db::Sqlite)
    };
    let app = TestApp::spawn_in(app.dir.clone(), app.db.clone(), opts).await;
    let done = wait_deployment(
        &app,
        &editor,
        &location,
        "the deployment to be failed",
        finished,
    )
    .await;
    assert_eq!(done["status"], "failed", "{done:#}");
    let s = steps(&done);
    assert_eq!(s[4].1, "failed");
    assert!(
        s[4].2
            .starts_with("the process running this deployment stopped (owner ")
            && s[4].2.contains("no heartbeat for over 1s 200ms"),
        "{}",
        s[4].2
    );
    assert!(s[5..].iter().all(|s| s.1 == "not_run"), "{s:#?}");
    assert!(
        done["detail"]
            .as_str()
            .unwrap()
            .contains("the process running this deployment stopped"),
        "{done:#}"
    );

    // The process that ran it is gone, so the daemon that failed it tells the app's channel.
    let sent = hooks
        .wait_for("the deploy_failed message", |r| !r.is_empty())
        .await;
    let text = sent[0].webhook_text("deploy_failed", crate::deploy_apply::FAILED_SUBJECT);
    let id = location.rsplit('/').next().unwrap();
    assert!(
        text.starts_with(&format!(
            "Deployment {id} of Shop \"storefront\" 1.4.2 to app-shop failed: deploy_app failed: the process running this deployment stopped"
        )) && text.contains(&format!("GET /api/apps/shop/deployments/{id}")),
        "{text}"
    );
    let recorded = notifications(&app).await;
    assert_eq!(
        recorded
            .iter()
            .map(|(e, c, _)| (e.as_str(), c.as_str()))
            .collect::<Vec<_>>(),
        [("deploy_failed", "team-shop")],
        "one message, by the one daemon that failed it: {recorded:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_mid_deployment_fails_it_at_once_naming_the_step() {
    let api = FakeApi::start().await;
    // Whether or not the stopping daemon still delivers it, the message must be in the outbox
    // (for the next daemon to deliver otherwise).
    let hooks = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = spawn_opts(Db::Sqlite, &api, dir.path()).config(&team_shop_channel(&hooks));
    let mut app = TestApp::spawn(opts).await;
    let editor = token(Role::Editor, &["app-shop"]);
    let location = deploy_until_rolling_out(&app, &api, &editor).await;
    let id: i64 = location.rsplit('/').next().unwrap().parse().unwrap();
    assert!(app.stop().success());
    let store = app.store().await;
    let d = store.deployment(id).await.unwrap().unwrap();
    assert_eq!(d.status, "failed");
    assert_eq!(
        d.detail.as_deref(),
        Some("deploy_app failed: the daemon running this deployment was stopped")
    );
    let steps = store.deployment_steps(id).await.unwrap();
    assert_eq!(steps[4].status, aiops::store::StepStatus::Failed);
    assert_eq!(steps[8].status, aiops::store::StepStatus::NotRun);
    store.close().await;
    let recorded = notifications(&app).await;
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    let (event, channel, body) = &recorded[0];
    assert_eq!(
        (event.as_str(), channel.as_str()),
        ("deploy_failed", "team-shop")
    );
    assert!(
        body.starts_with(&format!("Deployment {id} of Shop \"storefront\" 1.4.2 to app-shop failed: deploy_app failed: the daemon running this deployment was stopped")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_editors_of_the_app_deploy_it_and_a_daemon_without_a_cluster_says_so() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_app(spawn_opts(Db::Sqlite, &api, dir.path())).await;
    let editor = token(Role::Editor, &["app-shop"]);
    let (status, _) = app.api_register_app(&editor, flask()).await;
    assert_eq!(status, 201);
    let deploy = async |token: &str, body: &str| {
        let r = app
            .client
            .post(app.url("/api/apps/shop/deploy"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, _) = deploy(&token(Role::Viewer, &["app-shop"]), "").await;
    assert_eq!(status, 403);
    let (status, body) = deploy(&token(Role::Editor, &["app-blog"]), "").await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (404, &json!("app not found"))
    );
    let (status, body) = deploy(&editor, r#"{"skip_dns": true}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "body");
    let (status, body) = app
        .api_get(
            &token(Role::Editor, &["app-blog"]),
            "/api/apps/shop/deployments/1",
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // Nothing was queued by any of those.
    assert!(
        app.store()
            .await
            .deployments("shop", "app-shop", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A daemon with no cluster cannot run a deployment, and says what to do instead.
    let bare = TestApp::spawn_app(Spawn::new(Db::Sqlite).env("AIOPS_JWT_SECRET", SECRET)).await;
    let (status, _) = bare.api_register_app(&editor, flask()).await;
    assert_eq!(status, 201);
    let (status, body) = bare
        .api_post(&editor, "/api/apps/shop/deploy", json!({}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cluster.kubeconfig"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiops_deploy_detach_queues_the_deployment_and_the_daemon_runs_it() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_app(spawn_opts(Db::Sqlite, &api, dir.path())).await;
    let case = repo()
        .join("tests/golden/deploy/flask-basic.app.yaml")
        .display()
        .to_string();
    let env = std::collections::HashMap::from([
        ("AIOPS_DATABASE_URL", app.db.url.clone()),
        ("AIOPS_LOG", "warn".to_string()),
    ]);
    let cwd = app.dir.path().to_path_buf();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        common::run_cli(&cwd, &["deploy", &case, "--detach"], &env)
    })
    .await
    .unwrap();
    assert!(status.success(), "{out}{err}");
    assert!(
        out.starts_with("deployment 1 of shop queued: a daemon with a cluster runs it (check_dns, detect_framework,"),
        "{out}"
    );
    assert!(out.contains("GET /api/apps/shop/deployments/1"), "{out}");
    let editor = token(Role::Editor, &["app-shop"]);
    let done = wait_deployment(
        &app,
        &editor,
        "/api/apps/shop/deployments/1",
        "the detached deployment to finish",
        finished,
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["requested_by"], "cli");
    assert_eq!(
        done["owner"].as_str().map(|o| o.ends_with("-deploy")),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiops_deploy_interrupted_by_ctrl_c_records_the_deployment_failed_at_its_step() {
    let api = FakeApi::start().await;
    api.set_rollout_behaviour("app-shop", "shop", RolloutBehaviour::Stuck);
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(Db::Sqlite, dir.path()).await;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let case = repo().join("tests/golden/deploy/flask-basic.app.yaml");
    let hooks = StandIn::start().await;
    std::fs::write(dir.path().join("aiops.yaml"), team_shop_channel(&hooks)).unwrap();
    // The test's own handle on the store, to read what the interrupted command recorded.
    let store = aiops::store::Store::connect(&db.url, &Default::default())
        .await
        .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(["deploy", case.to_str().unwrap()])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIOPS_KUBECONFIG", &kubeconfig)
        .env("AIOPS_KUBE_CONTEXT", "fake")
        .env("AIOPS_DATABASE_URL", &db.url)
        .env("AIOPS_CONFIG", dir.path().join("aiops.yaml"))
        .env("AIOPS_DEPLOY_POLL", "50ms")
        .env("AIOPS_DEPLOY_TIMEOUT", "60s")
        .env("AIOPS_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // deploy_app is running (the rollout never completes): the moment a person presses Ctrl-C.
    until(
        "aiops deploy to be rolling out",
        Duration::from_secs(30),
        async || {
            let d = store
                .deployments("shop", "app-shop", 1)
                .await
                .ok()?
                .into_iter()
                .next()?;
            let steps = store.deployment_steps(d.id).await.ok()?;
            (steps.get(4)?.status == aiops::store::StepStatus::Running).then_some(())
        },
        String::new,
    )
    .await;
    common::process::signal(child.id(), "INT");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("deployment 1 of shop interrupted: recorded as failed"),
        "{stderr}"
    );
    // Told like any failed deployment, by the command itself (no daemon runs here).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("notified team-shop: sent"), "{stdout}");
    let sent = hooks.requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let text = sent[0].webhook_text("deploy_failed", crate::deploy_apply::FAILED_SUBJECT);
    assert!(
        text.contains("failed: deploy_app failed: aiops deploy was interrupted (Ctrl-C)"),
        "{text}"
    );
    let d = store.deployment(1).await.unwrap().unwrap();
    assert_eq!(d.status, "failed");
    assert_eq!(
        d.detail.as_deref(),
        Some("deploy_app failed: aiops deploy was interrupted (Ctrl-C)")
    );
    let steps = store.deployment_steps(1).await.unwrap();
    assert_eq!(steps[4].status, aiops::store::StepStatus::Failed);
    assert!(
        steps[5..]
            .iter()
            .all(|s| s.status == aiops::store::StepStatus::NotRun)
    );
    store.close().await;
}

async fn a_deployment_failed_as_stale_is_never_written_again_by_its_late_owner(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(db, dir.path()).await;
    let store = aiops::store::Store::connect(&db.url, &Default::default())
        .await
        .unwrap();
    let names = ["check_dns", "deploy_app"];
    let id = store
        .queue_deployment(&aiops::store::NewDeployment {
            app: "shop",
            namespace: "app-shop",
            version: "1",
            image: "shop:1",
            requested_by: "cli",
            skip_dns_check: false,
            steps: &names,
            run_by: Some("slow-owner"),
            queued_at: aiops::store::now_ms(),
        })
        .await
        .unwrap();
    assert!(store.start_step(id, "slow-owner", 0).await.unwrap());
    // Its heartbeat is older than zero seconds: another process fails it.
    let failed = store
        .fail_stale_deployments(
            Duration::ZERO,
            "the process running this deployment stopped",
        )
        .await
        .unwrap();
    assert_eq!(failed.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
    // The owner wakes up: nothing it writes lands, and it is told to stop.
    use aiops::store::StepStatus;
    assert!(
        !store
            .finish_step(id, "slow-owner", 0, StepStatus::Succeeded, "done")
            .await
            .unwrap()
    );
    assert!(!store.start_step(id, "slow-owner", 1).await.unwrap());
    assert!(!store.heartbeat_deployment(id, "slow-owner").await.unwrap());
    assert!(
        store
            .finish_owned_deployment(id, "slow-owner", true, "rolled out")
            .await
            .unwrap()
            .is_none()
    );
    let d = store.deployment(id).await.unwrap().unwrap();
    assert_eq!(d.status, "failed");
    let detail = d.detail.unwrap_or_default();
    assert!(
        detail.starts_with(
            "check_dns failed: the process running this deployment stopped (owner slow-owner, "
        ),
        "the deployment names the step it stopped at: {detail}"
    );
    let steps = store.deployment_steps(id).await.unwrap();
    assert_eq!(
        steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Failed, StepStatus::NotRun]
    );
    store.close().await;
}
both_backends!(a_deployment_failed_as_stale_is_never_written_again_by_its_late_owner);

async fn an_app_registered_again_elsewhere_lists_only_that_registrations_deployments(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(db, dir.path()).await;
    let store = aiops::store::Store::connect(&db.url, &Default::default())
        .await
        .unwrap();
    // Three deployments in app-shop, then the app moved to shop-v2 and deployed twice there.
    let mut ids = Vec::new();
    for (at, namespace) in [
        (1_000, "app-shop"),
        (2_000, "app-shop"),
        (3_000, "app-shop"),
        (4_000, "shop-v2"),
        (5_000, "shop-v2"),
    ] {
        let id = store
            .queue_deployment(&aiops::store::NewDeployment {
                app: "shop",
                namespace,
                version: "1",
                image: "shop:1",
                requested_by: "cli",
                skip_dns_check: false,
                steps: &["deploy_app"],
                run_by: None,
                queued_at: at,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    let listed = |namespace: &'static str, limit: i64| {
        let store = store.clone();
        async move {
            store
                .deployments("shop", namespace, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|d| (d.id, d.namespace))
                .collect::<Vec<_>>()
        }
    };
    // The limit counts this registration's deployments only, newest first: the two newer ones
    // in shop-v2 do not crowd them out.
    assert_eq!(
        listed("app-shop", 2).await,
        [
            (ids[2], "app-shop".to_string()),
            (ids[1], "app-shop".to_string())
        ]
    );
    assert_eq!(
        listed("shop-v2", 20).await,
        [
            (ids[4], "shop-v2".to_string()),
            (ids[3], "shop-v2".to_string())
        ]
    );
    assert!(listed("elsewhere", 20).await.is_empty());
    store.close().await;
}
both_backends!(an_app_registered_again_elsewhere_lists_only_that_registrations_deployments);

/// A git app naming its framework (so nothing is fetched), built to `registry` when set.
fn git_app() -> String {
    "name: shop\ndomain: shop.example.com\nsource_type: git\n\
     source_url: https://git.example.com/acme/shop.git\nframework: flask\n"
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_app_is_built_to_the_registry_and_runs_exactly_the_image_recorded() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_app(
        spawn_opts(Db::Sqlite, &api, dir.path()).env("AIOPS_DEPLOY_REGISTRY", "r.example.com/apps"),
    )
    .await;
    let editor = token(Role::Editor, &["app-shop"]);
    let (status, body) = app.api_register_app(&editor, git_app()).await;
    assert_eq!(status, 201, "{body}");
    let (status, queued) = app
        .api_post(&editor, "/api/apps/shop/deploy", json!({}))
        .await;
    assert_eq!(status, 202, "{queued}");
    let recorded = queued["image"].as_str().unwrap().to_string();
    assert!(
        recorded.starts_with("r.example.com/apps/shop:b"),
        "{recorded}"
    );
    // A second request while the first is under way is refused, naming it.
    let (status, again) = app
        .api_post(&editor, "/api/apps/shop/deploy", json!({}))
        .await;
    if status != 202 {
        assert_eq!(status, 409, "{again}");
        assert!(
            again["error"]
                .as_str()
                .unwrap()
                .contains("/api/apps/shop/deployments/1")
        );
    }
    let done = wait_deployment(
        &app,
        &editor,
        "/api/apps/shop/deployments/1",
        "the build and deploy to finish",
        finished,
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let s = steps(&done);
    assert_eq!(s[3].1, "succeeded", "{s:#?}");
    assert!(
        s[3].2.starts_with(&format!(
            "built {recorded} from https://git.example.com/acme/shop.git (Job app-shop/shop-build-"
        )),
        "{}",
        s[3].2
    );
    let jobs = api.jobs("app-shop");
    let build = jobs
        .iter()
        .find(|j| {
            j.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("shop-build-")
        })
        .expect("the build Job");
    let pod = build.spec.clone().unwrap().template;
    let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
    assert_eq!(
        args,
        [
            "--context=git://git.example.com/acme/shop.git".to_string(),
            format!("--destination={recorded}")
        ]
    );
    // The build pod is outside the app's NetworkPolicy (which selects the instance label).
    let labels = pod.metadata.unwrap().labels.unwrap();
    assert!(
        !labels.contains_key("app.kubernetes.io/instance"),
        "{labels:?}"
    );
    let d = api.deployment("app-shop", "shop");
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some(recorded.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_app_that_cannot_be_built_fails_at_build_image_after_its_namespace_exists() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_app(spawn_opts(Db::Sqlite, &api, dir.path())).await;
    let editor = token(Role::Editor, &["app-shop"]);
    let (status, body) = app.api_register_app(&editor, git_app()).await;
    assert_eq!(status, 201, "{body}");
    let (status, queued) = app
        .api_post(&editor, "/api/apps/shop/deploy", json!({}))
        .await;
    assert_eq!(status, 202, "{queued}");
    let done = wait_deployment(
        &app,
        &editor,
        "/api/apps/shop/deployments/1",
        "the deployment to fail",
        finished,
    )
    .await;
    assert_eq!(done["status"], "failed", "{done:#}");
    let s = steps(&done);
    assert_eq!(s[2].1, "succeeded", "{s:#?}");
    assert_eq!(s[3].1, "failed");
    assert!(
        s[3].2
            .contains("deploy.registry (AIOPS_DEPLOY_REGISTRY) is not set"),
        "{}",
        s[3].2
    );
    assert!(s[4..].iter().all(|s| s.1 == "not_run"), "{s:#?}");
    assert!(!api.has_deployment("app-shop", "shop"));
}
