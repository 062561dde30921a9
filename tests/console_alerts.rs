//! The alert center (`/ui/alerts`, `/ui/alerts/{id}`) on a real daemon: real Alertmanager
//! payloads posted to the webhook, pages read as a browser without JavaScript reads them, on
//! both store backends where the store's filters are involved.

use crate::both_backends;
use crate::common;

use aiops::auth::Role;
use aiops::store::{Job, JobState};
use common::console::{ConsoleClient, Page};
use common::payload::{alert, group, repair_alert};
use common::{Db, Spawn, TestApp, payload};
use reqwest::StatusCode;

fn ago(minutes: i64) -> String {
    common::minutes_ago(minutes)
}

/// The ids of the rows of the alert list, in page order.
fn row_ids(page: &Page) -> Vec<i64> {
    page.body
        .split("data-alert-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The HTML of the row of alert `id`.
fn row(page: &Page, id: i64) -> &str {
    let start = page
        .body
        .find(&format!("data-alert-id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row for alert {id} in:\n{}", page.body));
    let rest = &page.body[start..];
    &rest[..rest.find("</tr>").unwrap()]
}

/// The page's text with the entities the template engine writes decoded (it escapes `/` in
/// attribute values and text alike), for assertions about links and words.
fn decoded(page: &Page) -> String {
    page.body
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The newest alert occurrence's id, as the store has it.
async fn newest_alert_id(app: &TestApp) -> i64 {
    let f = aiops::store::ListFilter {
        limit: 1,
        ..Default::default()
    };
    app.store().await.list_alerts(&f).await.unwrap()[0].id
}

async fn ok(c: &ConsoleClient, path: &str) -> Page {
    let p = c.get(path).await;
    assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
    p
}

async fn each_row_says_what_aiops_did_or_why_not_and_the_filters_find_them(db: Db) {
    // Arrange: a repaired alert (the shipped `restart` rule on `prod/web`, a workload of the
    // tests' in-memory cluster), the same target again during the rule's cooldown (a new
    // occurrence: another startsAt), and an alert no rule matches.
    let app = TestApp::spawn_app(Spawn::new(db)).await;
    assert_eq!(
        app.post_webhook(repair_alert("restart", "prod", &[("app", "web")]))
            .await
            .status(),
        200
    );
    let repaired = newest_alert_id(&app).await;
    let jobs: Vec<Job> = app
        .wait_for_jobs("the repair to finish", |j| {
            j.len() == 1 && j[0].state == JobState::Succeeded
        })
        .await;
    let job = &jobs[0];
    assert_eq!(
        app.post_webhook(repair_alert("restart", "prod", &[("app", "web")]))
            .await
            .status(),
        200
    );
    let cooled = newest_alert_id(&app).await;
    let unmatched = payload(
        &[(
            &[
                ("alertname", "DiskFilling"),
                ("namespace", "prod"),
                ("severity", "warning"),
            ],
            "firing",
        )],
        &ago(1),
    );
    assert_eq!(app.post_webhook(unmatched).await.status(), 200);
    let no_rule = newest_alert_id(&app).await;
    let admin = ConsoleClient::direct(&app, "ann", Role::Admin, &[]).await;

    // Act
    let page = ok(&admin, "/ui/alerts").await;

    // Assert: newest first, each row in words.
    assert_eq!(row_ids(&page), [no_rule, cooled, repaired]);
    let r = row(&page, repaired);
    assert!(
        r.contains(&format!("href=\"/ui/repairs/{}\"", job.id)),
        "{r}"
    );
    assert!(r.contains("Succeeded") && r.contains(&job.playbook), "{r}");
    assert!(r.contains("data-automation=\"succeeded\""), "{r}");
    let r = row(&page, cooled);
    assert!(
        r.contains("aiops did nothing") && r.contains("Cooldown"),
        "{r}"
    );
    assert!(r.contains("(rule <code>restart</code>)"), "{r}");
    let r = row(&page, no_rule);
    assert!(r.contains("No rule matched"), "{r}");
    assert!(r.contains("warning"), "{r}");

    // Each filter, as the form sends it (empty fields included).
    let empty = "namespace=&alertname=&verdict=&reason=&state=";
    for (query, expected) in [
        (
            format!("{empty}&severity=warning&automation="),
            vec![no_rule],
        ),
        (
            format!("{empty}&severity=&automation=none"),
            vec![no_rule, cooled],
        ),
        (
            format!("{empty}&severity=&automation=succeeded"),
            vec![repaired],
        ),
        ("reason=cooldown".to_string(), vec![cooled]),
        ("verdict=skipped".to_string(), vec![no_rule]),
        ("alertname=KubeTrouble".to_string(), vec![cooled, repaired]),
        ("state=firing".to_string(), vec![no_rule, cooled, repaired]),
        ("state=resolved".to_string(), vec![]),
        ("namespace=blog".to_string(), vec![]),
    ] {
        let page = ok(&admin, &format!("/ui/alerts?{query}")).await;
        assert_eq!(row_ids(&page), expected, "{query}");
    }
    let page = ok(&admin, "/ui/alerts?automation=running").await;
    assert!(page.body.contains("No alert matches these filters."));
}
both_backends!(each_row_says_what_aiops_did_or_why_not_and_the_filters_find_them);

async fn a_resolved_alert_is_one_row_in_state_resolved_not_two(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db)).await;
    let starts = ago(30);
    let labels = [("alertname", "QueueSlow"), ("namespace", "shop")];
    let firing = group(vec![alert("firing", &labels, &starts)]).to_string();
    assert_eq!(app.post_webhook(firing).await.status(), 200);
    let id = newest_alert_id(&app).await;
    let resolved = group(vec![alert("resolved", &labels, &starts)]).to_string();
    assert_eq!(app.post_webhook(resolved).await.status(), 200);
    let admin = ConsoleClient::direct(&app, "ann", Role::Admin, &[]).await;

    let page = ok(&admin, "/ui/alerts").await;
    assert_eq!(
        row_ids(&page),
        [id],
        "the resolve is the state of its firing row"
    );
    assert!(row(&page, id).contains("Resolved"));
    assert_eq!(
        row_ids(&ok(&admin, "/ui/alerts?state=resolved").await),
        [id]
    );
    assert!(row_ids(&ok(&admin, "/ui/alerts?state=firing").await).is_empty());

    // A resolve whose firing notification never arrived is listed, saying so.
    let lone = [("alertname", "LoneResolve"), ("namespace", "shop")];
    let body = group(vec![alert("resolved", &lone, &ago(10))]).to_string();
    assert_eq!(app.post_webhook(body).await.status(), 200);
    let lone_id = newest_alert_id(&app).await;
    let page = ok(&admin, "/ui/alerts").await;
    assert_eq!(row_ids(&page), [lone_id, id]);
    assert!(row(&page, lone_id).contains("never received"));
}
both_backends!(a_resolved_alert_is_one_row_in_state_resolved_not_two);

#[tokio::test]
async fn a_user_of_one_app_sees_only_its_alerts_and_another_apps_alert_is_not_found() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let mut ids = Vec::new();
    for labels in [
        vec![("alertname", "Slow"), ("namespace", "shop")],
        vec![("alertname", "Slow"), ("namespace", "bank")],
        vec![("alertname", "NodeDown")],
    ] {
        let body = group(vec![alert("firing", &labels, &ago(3))]).to_string();
        assert_eq!(app.post_webhook(body).await.status(), 200);
        ids.push(newest_alert_id(&app).await);
    }
    let [shop, bank, no_app] = ids[..] else {
        unreachable!()
    };
    let alice = ConsoleClient::direct(&app, "alice", Role::Editor, &["shop"]).await;
    let admin = ConsoleClient::direct(&app, "ann", Role::Admin, &[]).await;

    assert_eq!(row_ids(&ok(&alice, "/ui/alerts").await), [shop]);
    assert!(row_ids(&ok(&alice, "/ui/alerts?namespace=bank").await).is_empty());
    ok(&alice, &format!("/ui/alerts/{shop}")).await;
    for hidden in [bank, no_app, 999_999] {
        let p = alice.get(&format!("/ui/alerts/{hidden}")).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "alert {hidden}");
        assert!(!p.body.contains("bank"), "the 404 tells nothing of it");
    }
    // An id that is not a number is the console's own 404 page, not axum's plain-text 400.
    let p = alice.get("/ui/alerts/abc").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("<main"), "the console's page: {}", p.body);
    // The app select offers the user's own apps only.
    let page = ok(&alice, "/ui/alerts").await;
    assert!(page.body.contains("<option value=\"shop\""));
    assert!(!page.body.contains("<option value=\"bank\""));

    assert_eq!(
        row_ids(&ok(&admin, "/ui/alerts").await),
        [no_app, bank, shop]
    );
    ok(&admin, &format!("/ui/alerts/{no_app}")).await;
}

#[tokio::test]
async fn the_alert_page_shows_labels_annotations_and_links_only_web_addresses() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let mut a = alert(
        "firing",
        &[
            ("alertname", "Down"),
            ("auto_repair", "restart"),
            ("namespace", "prod"),
            ("app", "web"),
            ("team", "<b>payments</b>"),
        ],
        &ago(2),
    );
    a["annotations"] = serde_json::json!({
        "runbook_url": "https://runbooks.example/down",
        "summary": "web is down",
    });
    a["generatorURL"] = "javascript:alert(1)".into();
    assert_eq!(
        app.post_webhook(group(vec![a]).to_string()).await.status(),
        200
    );
    let id = newest_alert_id(&app).await;
    let jobs = app
        .wait_for_jobs("the repair", |j| j.len() == 1 && j[0].state.is_terminal())
        .await;
    let admin = ConsoleClient::direct(&app, "ann", Role::Admin, &[]).await;

    let p = ok(&admin, &format!("/ui/alerts/{id}")).await;

    assert!(p.body.contains("id=\"page-alert\""));
    assert!(!p.body.contains("<b>payments</b>"), "labels are escaped");
    let text = decoded(&p);
    assert!(text.contains("<b>payments</b>"));
    assert!(
        text.contains("href=\"https://runbooks.example/down\""),
        "{text}"
    );
    assert!(text.contains("web is down"));
    assert!(
        !text.contains("href=\"javascript:"),
        "only http(s) becomes a link"
    );
    assert!(text.contains("javascript:alert(1)") && text.contains("not a web address"));
    assert!(
        p.body
            .contains(&format!("href=\"/ui/repairs/{}\"", jobs[0].id))
    );
    assert!(
        p.body.contains("href=\"/ui/rules/restart\""),
        "the decision's rule"
    );
    assert!(p.body.contains(&jobs[0].playbook));

    let p = admin.get("/ui/alerts/not-a-number").await;
    assert_ne!(p.status, StatusCode::OK);
}

#[tokio::test]
async fn the_list_pages_older_alerts_by_cursor_without_gaps_or_repeats() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let names: Vec<String> = (0..53).map(|i| format!("Alert{i}")).collect();
    let alerts = names
        .iter()
        .map(|n| {
            alert(
                "firing",
                &[("alertname", n), ("namespace", "shop")],
                &ago(4),
            )
        })
        .collect();
    assert_eq!(
        app.post_webhook(group(alerts).to_string()).await.status(),
        200
    );
    let admin = ConsoleClient::direct(&app, "ann", Role::Admin, &[]).await;

    let first = ok(&admin, "/ui/alerts?namespace=shop").await;
    let first_ids = row_ids(&first);
    assert_eq!(first_ids.len(), 50);
    let text = decoded(&first);
    let older = text
        .split("id=\"alerts-older\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .unwrap();
    assert!(older.contains("namespace=shop"), "{older}");
    let second = ok(&admin, &older).await;
    let second_ids = row_ids(&second);
    assert_eq!(second_ids.len(), 3);
    assert!(second_ids.iter().all(|id| id < first_ids.last().unwrap()));
    assert!(!second.body.contains("id=\"alerts-older\""));
}

#[tokio::test]
async fn the_page_speaks_traditional_chinese_and_refuses_a_made_up_filter_in_words() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let body = payload(
        &[(
            &[("alertname", "DiskFilling"), ("namespace", "shop")],
            "firing",
        )],
        &ago(1),
    );
    assert_eq!(app.post_webhook(body).await.status(), 200);
    let admin = ConsoleClient::direct(&app, "ann", Role::Admin, &[]).await;
    let zh = admin
        .http
        .get(format!("{}/ui/alerts", admin.base))
        .header(
            "cookie",
            format!("aiops_session={}; aiops_lang=zh-TW", admin.token),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(zh.contains("<html lang=\"zh-TW\""));
    assert!(
        zh.contains("告警中心") && zh.contains("沒有符合的規則"),
        "{zh}"
    );

    let p = admin.get("/ui/alerts?automation=dancing").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("automation"), "{}", p.body);
}

#[tokio::test]
async fn the_script_refreshes_the_rows_and_the_rows_are_where_it_looks() {
    // The refresh swaps `tbody#alert-rows` from a fetch of the same URL: the page must have
    // it, and the script must look for it (the browser tests run the script itself).
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let admin = ConsoleClient::direct(&app, "ann", Role::Admin, &[]).await;
    let page = ok(&admin, "/ui/alerts").await;
    assert!(page.body.contains("<tbody id=\"alert-rows\">"));
    assert!(page.body.contains("id=\"alert-filters\""));
    let js = reqwest::get(app.url("/ui/static/console.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("getElementById(\"alert-rows\")"));
    assert!(js.contains("visibilityState"));
}
