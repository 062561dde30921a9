//! The rule catalog (`/ui/rules`, `/ui/rules/{name}`) and the apps pages (`/ui/apps`,
//! `/ui/apps/{name}`) on a real daemon: rules as loaded, evidence counted from real repairs of
//! Alertmanager payloads over the viewer's apps only, playbook source highlighted and escaped,
//! another app's page answering 404.

use crate::both_backends;
use crate::common;

use aiops::auth::Role;
use aiops::deploy::AppSpec;
use aiops::store::Job;
use common::console::ConsoleClient;
use common::files::repo;
use common::payload::repair_alert;
use common::{Db, Spawn, TestApp};
use reqwest::StatusCode;

const RULES: &str = r#"
rules:
  - name: restart
    matchers: ['auto_repair="restart"', 'severity!="info"']
    playbook: restart
    cooldown: 10m
    budget: {max: 3, window: 1h}
    escalate:
      - playbook: rollback
      - notify: default
  - name: careful-rollback
    matchers: ['auto_repair="rollback"']
    playbook: rollback
    mode: approve
    approval: {approvers: ["console:alice"], expires: 20m}
"#;

async fn spawn(db: Db) -> TestApp {
    TestApp::spawn_app(Spawn::new(db).rules(RULES).env(
        "AIOPS_DEPLOY_WEBHOOK_URL",
        "https://aiops.example.net/webhook/alertmanager",
    ))
    .await
}

/// A firing alert for `namespace/web` that the `restart` rule repairs.
fn down(namespace: &str) -> String {
    repair_alert("restart", namespace, &[("app", "web")])
}

/// Repairs in `ns` the knowledge base counts: finished, not dry runs.
fn counted<'a>(jobs: &'a [Job], ns: &str) -> Vec<&'a Job> {
    jobs.iter()
        .filter(|j| j.target_namespace == ns && !j.dry_run && j.state.counts_as_finished())
        .collect()
}

/// Text as a reader sees it: the template engine's entities decoded (it escapes `/` too).
fn decoded(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The HTML of the row `tr[data-rule="NAME"]`.
fn rule_row<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!("<tr data-rule=\"{name}\">"))
        .unwrap_or_else(|| panic!("no row of rule {name}: {html}"));
    let end = html[start..].find("</tr>").unwrap() + start;
    &html[start..end]
}

/// Repairs in two apps: one viewer per app, and an admin.
async fn repaired_in_shop_and_blog(db: Db) -> (TestApp, Vec<Job>) {
    let app = spawn(db).await;
    for ns in ["shop", "blog"] {
        assert_eq!(app.post_webhook(down(ns)).await.status(), 200);
    }
    let jobs = app
        .wait_for_jobs("both repairs finished", |j| {
            j.iter().filter(|j| j.rule == "restart").count() >= 2
                && j.iter().all(|j| j.state.is_terminal())
        })
        .await;
    (app, jobs)
}

async fn the_catalog_shows_each_rule_with_its_mode_and_the_evidence_of_the_viewers_apps_only(
    db: Db,
) {
    let (app, jobs) = repaired_in_shop_and_blog(db).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["shop"]).await;
    let root = ConsoleClient::direct(&app, "root", Role::Admin, &[]).await;

    let page = alice.get("/ui/rules").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"page-rules\""));
    let restart = decoded(rule_row(&page.body, "restart"));
    assert!(
        restart.contains(r#"<code>auto_repair="restart"</code>"#),
        "{restart}"
    );
    assert!(
        restart.contains(r#"<code>severity!="info"</code>"#),
        "{restart}"
    );
    assert!(restart.contains("cooldown per target: 10m 0s"), "{restart}");
    assert!(restart.contains("attempt budget: 3 / 1h 0m"), "{restart}");
    assert!(
        restart.contains("then run <code>rollback</code>"),
        "{restart}"
    );
    assert!(
        restart.contains("then notify <code>default</code>"),
        "{restart}"
    );
    assert!(restart.contains("auto: repairs at once"), "{restart}");
    let careful = decoded(rule_row(&page.body, "careful-rollback"));
    assert!(careful.contains("approve: waits for a person"), "{careful}");
    assert!(careful.contains("<code>console:alice</code>"), "{careful}");
    assert!(careful.contains("20m 0s"), "{careful}");
    assert!(careful.contains("No finished repairs yet."), "{careful}");

    // The evidence counts the repairs of alice's app only; the admin's, every app's.
    let shop = counted(&jobs, "shop");
    let all = shop.len() + counted(&jobs, "blog").len();
    assert!(!shop.is_empty(), "{jobs:?}");
    assert!(
        restart.contains(&format!("<dd class=\"runs\">{}</dd>", shop.len())),
        "{restart}"
    );
    let ok = shop
        .iter()
        .filter(|j| j.state == aiops::store::JobState::Succeeded)
        .count();
    let rate = format!("{:.0}%", ok as f64 * 100.0 / shop.len() as f64);
    assert!(
        restart.contains(&format!("<dd class=\"success\">{rate}</dd>")),
        "{restart}"
    );
    let page = root.get("/ui/rules").await;
    assert!(
        rule_row(&page.body, "restart").contains(&format!("<dd class=\"runs\">{all}</dd>")),
        "{}",
        page.body
    );
}
both_backends!(the_catalog_shows_each_rule_with_its_mode_and_the_evidence_of_the_viewers_apps_only);

#[tokio::test]
async fn a_rule_page_shows_its_playbooks_highlighted_and_only_the_viewers_latest_repairs() {
    let (app, jobs) = repaired_in_shop_and_blog(Db::Sqlite).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Viewer, &["shop"]).await;
    let page = alice.get("/ui/rules/restart").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("id=\"page-rule\""));
    assert!(body.contains("id=\"evidence\""));
    // The main playbook first, then the chain's; the source as loaded, highlighted.
    let source = &body[body.find("<pre id=\"playbook-source\"").expect(body)..];
    assert!(
        source.contains("<span class=\"rhai-keyword\">let</span>"),
        "{source}"
    );
    assert!(source.contains("<span class=\"rhai-comment\">"), "{source}");
    assert!(body.contains("<code>rollback</code> <small>"), "{body}");
    // Alice's app's repairs link to their timelines; the other app's are not there.
    for j in jobs.iter().filter(|j| j.rule == "restart") {
        let link = format!("href=\"/ui/repairs/{}\"", j.id);
        assert_eq!(
            body.contains(&link),
            j.target_namespace == "shop",
            "{link}: {body}"
        );
    }
    assert_eq!(
        alice.get("/ui/rules/no-such-rule").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn register(app: &TestApp, name: &str) {
    let text = std::fs::read_to_string(repo().join("tests/golden/deploy/flask-basic.app.yaml"))
        .unwrap()
        .replace("name: shop", &format!("name: {name}"));
    let spec = AppSpec::parse(&text, "test").unwrap();
    let store = app.store().await;
    store
        .upsert_app(
            name,
            &spec.namespace(),
            &serde_json::to_value(&spec).unwrap(),
            "cli",
        )
        .await
        .unwrap();
    let id = store
        .start_deployment(name, &spec.namespace(), "1.4.2", "ghcr.io/acme/shop:1.4.2")
        .await
        .unwrap();
    store
        .finish_deployment(id, false, "rollout <timed out>")
        .await
        .unwrap();
}

async fn apps_show_only_the_viewers_apps_with_their_manifests_and_deployments(db: Db) {
    let app = spawn(db).await;
    register(&app, "shop").await;
    register(&app, "blog").await;
    // Viewers are scoped by namespace: shop's is app-shop by default.
    let alice = ConsoleClient::direct(&app, "alice", Role::Viewer, &["app-shop"]).await;

    let page = alice.get("/ui/apps").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"page-apps\""));
    assert!(
        page.body.contains("<tr data-app=\"shop\">"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("data-app=\"blog\""), "{}", page.body);
    assert!(
        page.body.contains("data-status=\"failed\">failed</span>"),
        "{}",
        page.body
    );

    let page = alice.get("/ui/apps/shop").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"page-app\""));
    // The deployment's detail is text, never markup.
    assert!(
        page.body.contains("rollout &lt;timed out&gt;"),
        "{}",
        page.body
    );
    // The manifests as the API renders them.
    let body = decoded(&page.body);
    assert!(body.contains("kind: Deployment"), "{body}");
    assert!(
        body.contains(r#"image: "ghcr.io/acme/shop:1.4.2""#),
        "{body}"
    );
    assert!(
        body.contains("data-status=\"failed\">failed</span>"),
        "{body}"
    );

    // Another app's page is the same 404 as a missing one.
    let other = alice.get("/ui/apps/blog").await;
    let missing = alice.get("/ui/apps/nothing").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.body, missing.body);
}
both_backends!(apps_show_only_the_viewers_apps_with_their_manifests_and_deployments);

#[tokio::test]
async fn the_catalog_speaks_traditional_chinese_when_asked() {
    let app = spawn(Db::Sqlite).await;
    let alice = ConsoleClient::direct(&app, "alice", Role::Viewer, &["shop"]).await;
    let page = alice
        .http
        .get(app.url("/ui/rules"))
        .header(
            "cookie",
            format!("aiops_session={}; aiops_lang=zh-TW", alice.token),
        )
        .send()
        .await
        .unwrap();
    let body = page.text().await.unwrap();
    assert!(body.contains("<html lang=\"zh-TW\">"), "{body}");
    assert!(body.contains("規則與處置腳本"), "{body}");
    assert!(body.contains("核准：等待人員核准"), "{body}");
}
