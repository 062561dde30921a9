//! The console's repairs pages on a real daemon: `/ui/repairs` (the list, its filters and who
//! sees what) and `/ui/repairs/{id}` (one repair's timeline), fed by real Alertmanager
//! payloads whose playbooks run on the in-memory cluster.

use crate::both_backends;
use crate::common;

use aiops::auth::Role;
use aiops::store::JobState;
use common::console::ConsoleClient;
use common::stand_ins::{Answer, StandIn};
use common::{Db, Spawn, TestApp, repo};
use reqwest::StatusCode;

/// A real Alertmanager payload asking for `repair` on Deployment `app` in `prod`.
fn alert(repair: &str, app: &str) -> String {
    common::payload::repair_alert(repair, "prod", &[("app", app)])
}

/// A page's HTML with minijinja's escapes of `/`, quotes and `&` undone, so that assertions
/// read as the page does (`prod/Deployment/web`).
fn text(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// A page's body as [`text`] reads it.
trait Text {
    fn text(&self) -> String;
}

impl Text for common::console::Page {
    fn text(&self) -> String {
        text(&self.body)
    }
}

/// The `<li class="entry …">` items of a timeline page, as (data-kind, text of the item).
fn entries(html: &str) -> Vec<(String, String)> {
    let list = html
        .split_once("<ol id=\"timeline\">")
        .expect("the page has a timeline")
        .1;
    list.split("<li class=\"entry ")
        .skip(1)
        .map(|item| {
            let kind = item
                .split_once("data-kind=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(k, _)| k.to_string())
                .unwrap_or_default();
            (kind, item.split("</li>").next().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_repair_is_listed_and_its_timeline_shows_the_alert_decision_steps_and_verification()
 {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    app.post_webhook(alert("oom_handler", "web")).await;
    let jobs = app
        .wait_all_jobs_in(&[JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(jobs[0].state, JobState::Succeeded, "{jobs:#?}");
    let id = jobs[0].id;
    let admin = ConsoleClient::direct(&app, "ana", Role::Admin, &[]).await;

    let list = admin.get("/ui/repairs").await;
    assert_eq!(list.status, StatusCode::OK, "{}", app.log_text());
    assert!(list.text().contains("id=\"page-repairs\""), "{}", list.body);
    let row = format!("<tr data-repair-id=\"{id}\" data-state=\"succeeded\">");
    assert!(list.text().contains(&row), "{}", list.body);
    assert!(list.text().contains("prod/Deployment/web"), "{}", list.body);
    assert!(list.text().contains(&format!("href=\"/ui/repairs/{id}\"")));

    let page = admin.get(&format!("/ui/repairs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &text(&page.body);
    assert!(html.contains("id=\"page-repair\""), "{html}");
    assert!(
        html.contains("id=\"repair-state\" data-state=\"succeeded\""),
        "{html}"
    );
    let kinds: Vec<String> = entries(html).into_iter().map(|(k, _)| k).collect();
    // The alert and its decision come first, then the job's states and the run, in order.
    assert_eq!(kinds[0], "alert", "{kinds:?}");
    assert_eq!(kinds[1], "decision", "{kinds:?}");
    let step_kinds: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| matches!(*k, "step" | "verify"))
        .collect();
    assert_eq!(
        step_kinds,
        ["step", "step", "step", "verify"],
        "set_memory, wait_rollout, outcome, verify: {kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "state"), "{kinds:?}");
    let all = entries(html);
    let set_memory = all
        .iter()
        .find(|(k, text)| k == "step" && text.contains("set_memory"))
        .map(|(_, t)| t)
        .expect("the set_memory step");
    assert!(set_memory.contains("limit 615Mi"), "{set_memory}");
    let verify = &all.iter().find(|(k, _)| k == "verify").unwrap().1;
    assert!(
        verify.contains("badge ok"),
        "a passed verification: {verify}"
    );
    let decision = &all[1].1;
    assert!(
        decision.contains("repairs it"),
        "the decision's sentence: {decision}"
    );
    // The alert links to its page; the Events command names the target.
    assert!(
        html.contains(&format!("href=\"/ui/alerts/{}\"", jobs[0].alert_event_id)),
        "{html}"
    );
    assert!(
        html.contains(
            "kubectl get events --namespace prod --field-selector involvedObject.kind=Deployment,involvedObject.name=web"
        ),
        "{html}"
    );

    // Filters: by state, by mode, by target; an unknown state is a bad request in words.
    let failed = admin.get("/ui/repairs?state=failed").await;
    assert!(
        !failed.text().contains("data-repair-id="),
        "{}",
        failed.body
    );
    assert!(failed.text().contains("No repair matches these filters."));
    let shadow = admin.get("/ui/repairs?mode=shadow&state=").await;
    assert!(
        !shadow.text().contains("data-repair-id="),
        "{}",
        shadow.body
    );
    let auto = admin
        .get("/ui/repairs?mode=auto&target=prod%2FDeployment%2Fweb")
        .await;
    assert!(auto.text().contains(&row), "{}", auto.body);
    let other = admin
        .get("/ui/repairs?target=prod%2FDeployment%2Fapi")
        .await;
    assert!(!other.text().contains("data-repair-id="), "{}", other.body);
    let bad = admin.get("/ui/repairs?state=exploded").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("Unknown repair state."), "{}", bad.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_repair_is_not_listed_and_its_timeline_is_the_same_404_as_a_missing_one() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    app.post_webhook(alert("oom_handler", "web")).await;
    let jobs = app
        .wait_all_jobs_in(&[JobState::Succeeded, JobState::Escalated])
        .await;
    let id = jobs[0].id;
    let outsider = ConsoleClient::direct(&app, "olga", Role::Editor, &["staging"]).await;
    let theirs = outsider.get(&format!("/ui/repairs/{id}")).await;
    let missing = outsider.get("/ui/repairs/999999").await;
    let nonsense = outsider.get("/ui/repairs/abc").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(nonsense.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.body, missing.body, "nothing tells them apart");
    assert!(!theirs.text().contains("prod/Deployment/web"));
    for path in ["/ui/repairs", "/ui/repairs?namespace=prod"] {
        let list = outsider.get(path).await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(
            !list.text().contains("data-repair-id="),
            "{path}: {}",
            list.body
        );
    }
    // A user of the app sees it, and the app filter offers only their apps.
    let insider = ConsoleClient::direct(&app, "ivan", Role::Viewer, &["prod"]).await;
    let list = insider.get("/ui/repairs").await;
    assert!(
        list.text().contains(&format!("data-repair-id=\"{id}\"")),
        "{}",
        list.body
    );
    assert!(
        list.text().contains("<option value=\"prod\""),
        "{}",
        list.body
    );
    assert!(!list.text().contains("<option value=\"staging\""));
    let page = insider.get(&format!("/ui/repairs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
}

/// A restart that never rolls out walks the chain (restart, then rollback) and ends with
/// humans: each job's timeline links the chain, the escalations are entries, and the message
/// to humans is a notification entry with its delivery attempts.
async fn a_chain_that_ends_with_humans_shows_escalations_and_notifications_with_attempts(db: Db) {
    let telegram = StandIn::start().await;
    telegram.default_answer(Answer::new(200, r#"{"ok":true,"result":{"message_id":1}}"#));
    let config = format!(
        "notify:\n  channels:\n    tg: {{type: telegram, bot_token: \"1:t\", chat_id: \"1\", api_url: \"{}\"}}\n  routes:\n    - channels: [tg]\n",
        telegram.url
    );
    let state = repo().join("tests/fixtures/cluster-failing.yaml");
    // `aiops serve` as a process: the in-process daemon reads no configuration file.
    let app = TestApp::spawn(
        Spawn::new(db)
            .env("AIOPS_CLUSTER_STATE_FILE", state.to_str().unwrap())
            .config(&config),
    )
    .await;
    app.post_webhook(alert("restart", "web")).await;
    let jobs = app
        .wait_for_jobs("restart then rollback to end", |j| {
            j.len() == 2 && j.iter().all(|j| j.state == JobState::Escalated)
        })
        .await;
    let (first, second) = (jobs[0].id, jobs[1].id);
    let store = app.store().await;
    let sent = common::wait::until_ok(
        "a notification of the chain's end delivered",
        std::time::Duration::from_secs(30),
        async || {
            let n = store.job_notifications(second).await.unwrap();
            if n.iter().any(|n| !n.attempts.is_empty()) {
                Ok(n)
            } else {
                Err(format!("{n:?}"))
            }
        },
        || app.log_text(),
    )
    .await;
    let admin = ConsoleClient::direct(&app, "ana", Role::Admin, &[]).await;

    let page = admin.get(&format!("/ui/repairs/{first}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.text().contains("id=\"repair-chain\""), "{}", page.body);
    assert!(
        page.text()
            .contains(&format!("href=\"/ui/repairs/{second}\"")),
        "the first job links the next: {}",
        page.body
    );
    let escalation = entries(&text(&page.body))
        .into_iter()
        .find(|(k, _)| k == "escalation")
        .expect("an escalation entry");
    assert!(
        escalation.1.contains("playbook rollback"),
        "{}",
        escalation.1
    );

    let page = admin.get(&format!("/ui/repairs/{second}")).await;
    let all = entries(&text(&page.body));
    let to_humans = all
        .iter()
        .find(|(k, t)| k == "escalation" && t.contains("manual intervention required"))
        .expect("the hand-off to humans");
    assert!(to_humans.1.contains("badge warn"), "{}", to_humans.1);
    let notification = all
        .iter()
        .find(|(k, _)| k == "notification")
        .map(|(_, t)| t)
        .expect("a notification entry");
    assert!(
        notification.contains("<span class=\"subject\">tg</span>"),
        "{notification}"
    );
    assert!(notification.contains("data-result="), "{notification}");
    assert!(
        notification.contains(&sent[0].attempts[0].result),
        "{notification}"
    );
    assert!(
        !notification.contains("1:t"),
        "the bot token never reaches a page: {notification}"
    );
    assert!(
        page.text()
            .contains("id=\"repair-state\" data-state=\"escalated\""),
        "{}",
        page.body
    );
}

both_backends!(a_chain_that_ends_with_humans_shows_escalations_and_notifications_with_attempts);
