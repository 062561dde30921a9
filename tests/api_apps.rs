//! `/api/apps` through the daemon (in-process: nothing here needs a process of its own):
//! registration by editors (audited), per-app visibility (another app's items are 404 and never
//! listed), and the rendered manifests.

use crate::both_backends;
use crate::common;

use aiops::auth::Role;
use common::{Db, Spawn, TestApp, repo};
use reqwest::StatusCode;
use serde_json::Value;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn token(role: Role, apps: &[&str]) -> String {
    common::api::token(SECRET, role, apps)
}

async fn spawn(db: Db) -> TestApp {
    TestApp::spawn_app(Spawn::new(db).env("AIOPS_JWT_SECRET", SECRET).env(
        "AIOPS_DEPLOY_WEBHOOK_URL",
        "https://aiops.example.net/webhook/alertmanager",
    ))
    .await
}

fn spec(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/golden/deploy/flask-basic.app.yaml"))
        .unwrap()
        .replace("name: shop", &format!("name: {name}"))
}

/// Registers (or replaces) an app from its YAML spec.
async fn post(app: &TestApp, token: &str, body: String) -> (StatusCode, Value) {
    app.api_register_app(token, body).await
}

/// (subject, resource, status) of every audit entry, oldest first.
async fn audit_rows(app: &TestApp) -> Vec<(String, String, i64)> {
    let store = app.store().await;
    let mut rows = store.audit_log(i64::MAX).await.unwrap();
    rows.reverse();
    rows.into_iter()
        .map(|e| (e.subject, e.resource, e.status))
        .collect()
}

async fn editors_register_apps_others_see_only_their_own(db: Db) {
    let app = spawn(db).await;
    // A token's apps are namespaces; an app's is app-<name> unless its spec says otherwise.
    let editor = token(Role::Editor, &["app-shop"]);

    // Register, then replace: 201 then 200, both audited with the subject.
    let (status, body) = post(&app, &editor, spec("shop")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["namespace"], "app-shop");
    assert_eq!(body["created_by"], "editor-user");
    let (status, _) = post(&app, &editor, spec("shop").replace("1.4.2", "1.5.0")).await;
    assert_eq!(status, 200);

    // Another app's namespace: 404, as if it did not exist; a viewer cannot write.
    let (status, _) = post(&app, &editor, spec("blog")).await;
    assert_eq!(status, 404);
    let (status, _) = post(&app, &token(Role::Viewer, &["app-shop"]), spec("shop")).await;
    assert_eq!(status, 403);
    // A bad spec names its field.
    let (status, body) = post(
        &app,
        &editor,
        spec("shop").replace("framework: flask", "framework: rails"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("framework"),
        "{body}"
    );

    // An admin registers blog; the shop editor neither lists nor reads it.
    let admin = token(Role::Admin, &[]);
    assert_eq!(post(&app, &admin, spec("blog")).await.0, 201);
    let (_, list) = app.api_get(&editor, "/api/apps").await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["app"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop"]);
    let (_, list) = app.api_get(&admin, "/api/apps").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.api_get(&editor, "/api/apps/blog/manifests").await.0,
        404
    );
    assert_eq!(
        app.api_get(&editor, "/api/apps/nope/manifests").await.0,
        404
    );
    // Taking over blog's name from shop's namespace does not reveal it either.
    let hijack = spec("blog").replace("domain:", "namespace: app-shop\ndomain:");
    assert_eq!(post(&app, &editor, hijack).await.0, 404);

    // The manifests are the replaced spec's, with the configured webhook URL.
    let (status, m) = app.api_get(&editor, "/api/apps/shop/manifests").await;
    assert_eq!(status, 200, "{m}");
    let objects = m["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 11);
    let dep = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/shop:1.5.0"
    );
    assert!(
        m["alertmanager"]
            .as_str()
            .unwrap()
            .contains("https://aiops.example.net/webhook/alertmanager")
    );
    let yaml = app
        .client
        .get(app.url("/api/apps/shop/manifests?format=yaml"))
        .bearer_auth(&editor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        yaml.starts_with("---\napiVersion: v1\nkind: Namespace"),
        "{yaml}"
    );

    // Without a token: 401.
    let r = app.client.get(app.url("/api/apps")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let audit = audit_rows(&app).await;
    let statuses: Vec<i64> = audit.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(statuses, [201, 200, 404, 403, 400, 201, 404], "{audit:?}");
    assert_eq!(audit[0], ("editor-user".into(), "app shop".into(), 201));
}
both_backends!(editors_register_apps_others_see_only_their_own);

async fn an_app_registered_in_its_own_name_space_stays_there_when_its_spec_names_none(db: Db) {
    let app = spawn(db).await;
    let admin = token(Role::Admin, &[]);
    // As an app registered before the app-<name> default was: in the namespace "shop".
    let old = spec("shop").replace("domain:", "namespace: shop\ndomain:");
    let (status, body) = post(&app, &admin, old).await;
    assert_eq!(
        (status.as_u16(), &body["namespace"]),
        (201, &Value::from("shop")),
        "{body}"
    );
    // The same spec without a namespace (as it was written then) replaces it where it is.
    let (status, body) = post(&app, &admin, spec("shop").replace("1.4.2", "1.5.0")).await;
    assert_eq!(
        (status.as_u16(), &body["namespace"]),
        (200, &Value::from("shop")),
        "{body}"
    );
    let (_, m) = app.api_get(&admin, "/api/apps/shop/manifests").await;
    assert_eq!(m["namespace"], "shop", "{m}");
    // A token scoped to the old namespace still reaches it.
    let editor = token(Role::Editor, &["shop"]);
    assert_eq!(post(&app, &editor, spec("shop")).await.0, 200);
}
both_backends!(an_app_registered_in_its_own_name_space_stays_there_when_its_spec_names_none);

/// An upload's framework is detected when its archive is read (at deploy), so it is registered
/// without one. (A git source is detected at registration: tests/deploy_onboarding.rs, against a
/// repository served on 127.0.0.1.)
async fn an_upload_app_is_registered_before_its_framework_is_known(db: Db) {
    let app = spawn(db).await;
    let editor = token(Role::Editor, &["app-shop"]);
    let body = "name: shop\ndisplay_name: Shop\ndomain: shop.example.com\nsource_type: upload\n\
                source_url: https://files.example.com/shop-1.2.tar.gz\nplan: standard\n";
    let (status, body) = post(&app, &editor, body.to_string()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["namespace"], "app-shop");
    // Its manifests wait for the framework and the image: a clear 422, not a guess.
    let (status, m) = app.api_get(&editor, "/api/apps/shop/manifests").await;
    assert_eq!(status, 422, "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .contains("names no framework and none was detected yet"),
        "{m}"
    );
}
both_backends!(an_upload_app_is_registered_before_its_framework_is_known);

#[tokio::test]
async fn any_token_reads_the_template_catalog_and_no_token_does_not() {
    let app = spawn(Db::Sqlite).await;
    let viewer = token(Role::Viewer, &["app-shop"]);
    let (status, c) = app.api_get(&viewer, "/api/templates").await;
    assert_eq!(status, 200, "{c}");
    let names: Vec<&str> = c["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["flask", "django", "nodejs", "nextjs", "static", "go"]
    );
    let go = &c["frameworks"][5];
    assert_eq!(
        (go["port"].as_u64(), go["detected_by"].as_str()),
        (Some(8080), Some("go.mod"))
    );
    assert_eq!(go["objects"][0], "Namespace/app-example");
    let plans: Vec<&str> = c["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["basic", "standard", "advanced", "professional"]);
    let git = c["source_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "git")
        .unwrap();
    assert_eq!(git["requires"], serde_json::json!(["source_url"]));
    assert!(
        c["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "source_url" && p["required"] == "git, upload")
    );
    let r = app
        .client
        .get(app.url("/api/templates"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
