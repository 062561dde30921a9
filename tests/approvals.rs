//! Approve mode through the daemon: a rule in `mode: approve` makes its repair wait in
//! `awaiting_approval`, tells the routes with signed single-use links (one pair per email or
//! webhook channel), and runs the repair only after an allow-listed approval, exactly once.
//! Refusals (bad signature, reused link, channel not on the list, approval after the resolve,
//! expiry) each do the documented thing and are recorded; two clicks and two daemons act once;
//! no secret reaches the daemon's output.

use crate::both_backends;
use crate::common;

use aiops::store::{Job, JobState, Store};
use common::stand_ins::{Request, StandIn};
use common::{Db, Spawn, TestApp, payload};
use reqwest::StatusCode;

/// The link-signing key: it must never appear in the daemon's output.
const SECRET: &str = "approval-secret-9f8e7d6c5b4a39281706f5e4";
/// What the daemon believes its address is; the test reaches it at its real one.
const EXTERNAL: &str = "https://aiops.example.com";

fn rules(expires: &str) -> String {
    format!(
        r#"
rules:
  - name: restart-web
    matchers: ['auto_repair="restart"']
    playbook: restart
    params: {{rollout_timeout: 1m}}
    mode: approve
    approval: {{expires: {expires}, approvers: ["webhook:wh1", "webhook:wh2", "telegram:42"]}}
"#
    )
}

/// Three webhook channels on one route; `stranger` is on no allow-list.
fn config(hooks: &StandIn, external: bool) -> String {
    let url = &hooks.url;
    let links = if external {
        format!("external_url: {EXTERNAL}\napproval_secret: {SECRET}\n")
    } else {
        String::new()
    };
    format!(
        "{links}jobs: {{lease: 2s}}\nnotify:\n  channels:\n    wh1: {{type: webhook, url: \"{url}/wh1\"}}\n    \
         wh2: {{type: webhook, url: \"{url}/wh2\"}}\n    stranger: {{type: webhook, url: \"{url}/stranger\"}}\n  \
         routes:\n    - channels: [wh1, wh2, stranger]\n"
    )
}

fn alert(status: &str) -> String {
    payload(
        &[(
            &[
                ("alertname", "KubePodCrashLooping"),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "web"),
            ],
            status,
        )],
        "2026-11-26T04:00:00Z",
    )
}

fn opts(db: Db, hooks: &StandIn, expires: &str) -> Spawn {
    Spawn::new(db)
        .rules(&rules(expires))
        .config(&config(hooks, true))
}

/// The `event` messages `channel` received.
fn messages(hooks: &StandIn, channel: &str, event: &str) -> Vec<serde_json::Value> {
    hooks
        .requests()
        .iter()
        .filter(|r| r.path == format!("/{channel}"))
        .map(Request::json)
        .filter(|j| j["event"] == event)
        .collect()
}

/// The approve and reject links `channel` was sent, as paths on the daemon.
async fn links(hooks: &StandIn, channel: &str) -> (String, String) {
    let path = format!("/{channel}");
    let reqs = hooks
        .wait_for(&format!("{channel}'s approval request"), |r| {
            r.iter()
                .any(|r| r.path == path && r.json()["event"] == "approval_requested")
        })
        .await;
    let msg = reqs
        .iter()
        .find(|r| r.path == path && r.json()["event"] == "approval_requested")
        .unwrap()
        .json();
    let prompt = &msg["data"]["approval"];
    let local = |key: &str| {
        let url = prompt[key].as_str().unwrap();
        url.strip_prefix(EXTERNAL)
            .unwrap_or_else(|| panic!("{key} {url} is not under external_url"))
            .to_string()
    };
    (local("approve_url"), local("reject_url"))
}

/// The token of a link path.
fn token(path: &str) -> &str {
    path.strip_prefix("/approve/").unwrap()
}

/// A page's text with the entities the HTML escaping writes turned back into characters.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Posts the confirmation page's form; returns the status and the page.
async fn post_form(app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token(path)))
        .send()
        .await
        .unwrap();
    (r.status(), unescape(&r.text().await.unwrap()))
}

async fn one_job(app: &TestApp, state: JobState) -> Job {
    let jobs = app
        .wait_for_jobs(&format!("one job {state}"), |j| {
            j.len() == 1 && j[0].state == state
        })
        .await;
    jobs[0].clone()
}

/// How many times the job was claimed (ran), from its state changes.
async fn runs(store: &Store, job: i64) -> usize {
    let events = store.job_events(job).await.unwrap();
    events.iter().filter(|e| e.to == "running").count()
}

fn assert_no_secret(app: &TestApp, tokens: &[&str]) {
    let logs = app.log_text();
    assert!(!logs.is_empty());
    assert!(!logs.contains(SECRET), "the link secret was logged");
    for t in tokens {
        assert!(!logs.contains(t), "a link token was logged");
    }
}

async fn an_approve_rule_waits_and_a_posted_link_runs_the_repair_exactly_once(db: Db) {
    // Arrange
    let hooks = StandIn::start().await;
    let app = TestApp::spawn_app(opts(db, &hooks, "10m")).await;

    // Act: the alert fires.
    let body = app.post_webhook_json(alert("firing")).await;

    // Assert: the job waits, and each link channel got links of its own.
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
    let job = one_job(&app, JobState::AwaitingApproval).await;
    let (approve, reject) = links(&hooks, "wh1").await;
    let (approve2, _) = links(&hooks, "wh2").await;
    assert_ne!(approve, reject);
    assert_ne!(approve, approve2, "each channel has its own links");
    let request = &messages(&hooks, "wh1", "approval_requested")[0];
    let text = request["text"].as_str().unwrap();
    assert!(
        text.contains("aiops wants to run restart on prod/Deployment/web"),
        "{text}"
    );
    assert!(
        text.contains("Who may approve: webhook:wh1, webhook:wh2, telegram:42"),
        "{text}"
    );
    assert!(text.contains("Expires: in 10m"), "{text}");
    assert!(
        text.contains(&format!("Approve: {EXTERNAL}{approve}")),
        "{text}"
    );
    assert_eq!(request["data"]["approval"]["job_id"], job.id);

    // Act: a link scanner (or the person) opens the link.
    let page = app.client.get(app.url(&approve)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = unescape(&page.text().await.unwrap());

    // Assert: a confirmation page, and nothing changed.
    assert!(html.contains("Approve this repair?"), "{html}");
    assert!(html.contains("prod/Deployment/web"), "{html}");
    assert!(html.contains("<form method=\"post\""), "{html}");
    let store = app.store().await;
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().state,
        JobState::AwaitingApproval
    );
    assert!(store.approvals(job.id).await.unwrap().is_empty());

    // Act: the page's form is posted.
    let (status, html) = post_form(&app, &approve).await;

    // Assert: approved, run once through the normal path, recorded and told.
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("will run now"), "{html}");
    let done = one_job(&app, JobState::Succeeded).await;
    assert_eq!(runs(&store, done.id).await, 1);
    let restarts = store.job_steps(done.id).await.unwrap();
    assert_eq!(
        restarts.iter().filter(|s| s.action == "restart").count(),
        1,
        "the cluster was changed once: {restarts:#?}"
    );
    let states: Vec<String> = store
        .job_events(done.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        &states[..3],
        ["awaiting_approval", "queued", "running"],
        "{states:?}"
    );
    let recorded = store.approvals(done.id).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (
            recorded[0].who.as_str(),
            recorded[0].via.as_str(),
            recorded[0].outcome.as_str()
        ),
        ("webhook:wh1", "wh1", "approved")
    );
    let audit = store.audit_log(10).await.unwrap();
    assert!(
        audit.iter().any(|a| a.subject == "webhook:wh1"
            && a.action == "approve"
            && a.resource == format!("repair {}", done.id)
            && a.status == 200),
        "{audit:#?}"
    );
    let told = hooks
        .wait_for("the decision told", |r| {
            r.iter()
                .any(|r| r.path == "/wh2" && r.json()["event"] == "approval_decided")
        })
        .await;
    let decided = told
        .iter()
        .find(|r| r.path == "/wh2" && r.json()["event"] == "approval_decided")
        .unwrap()
        .json();
    assert!(
        decided["text"]
            .as_str()
            .unwrap()
            .starts_with("Approved by webhook:wh1 (webhook:wh1) via wh1."),
        "{decided}"
    );
    assert_no_secret(&app, &[token(&approve), token(&reject)]);
}
both_backends!(an_approve_rule_waits_and_a_posted_link_runs_the_repair_exactly_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_link_cancels_the_repair_and_nothing_runs() {
    let hooks = StandIn::start().await;
    let app = TestApp::spawn_app(opts(Db::Sqlite, &hooks, "10m")).await;
    app.post_webhook(alert("firing")).await;
    let (_, reject) = links(&hooks, "wh2").await;

    let page = app.client.get(app.url(&reject)).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("Reject this repair?"));
    let (status, html) = post_form(&app, &reject).await;

    assert_eq!(status, 200, "{html}");
    assert!(html.contains("will not run"), "{html}");
    let job = one_job(&app, JobState::Cancelled).await;
    assert_eq!(job.outcome.as_deref(), Some("rejected by webhook:wh2"));
    assert_eq!(job.started_at, None);
    let store = app.store().await;
    assert_eq!(runs(&store, job.id).await, 0);

    // Retention keeps the clicks as long as the audit log, then prunes them with the used
    // link's nonce.
    let raw = common::raw_db(&app.db.url).await;
    let now = aiops::store::now_ms();
    store.prune(&common::cutoffs(now, 30)).await.unwrap();
    assert_eq!(common::count_rows(&raw, "approvals").await, 1);
    assert_eq!(common::count_rows(&raw, "approval_links_used").await, 1);
    let year = 366 * aiops::store::DAY_MS;
    store.prune(&common::cutoffs(now + year, 30)).await.unwrap();
    assert_eq!(common::count_rows(&raw, "approvals").await, 0);
    assert_eq!(common::count_rows(&raw, "approval_links_used").await, 0);
}

async fn bad_signatures_reused_links_and_strangers_are_refused_and_recorded(db: Db) {
    // Arrange
    let hooks = StandIn::start().await;
    let app = TestApp::spawn_app(opts(db, &hooks, "10m")).await;
    app.post_webhook(alert("firing")).await;
    let job = one_job(&app, JobState::AwaitingApproval).await;
    let (approve, _) = links(&hooks, "wh1").await;
    let (approve2, _) = links(&hooks, "wh2").await;
    let (stranger, _) = links(&hooks, "stranger").await;
    let store = app.store().await;

    // A token altered by one character: refused, nothing recorded, nothing decided.
    let mut forged = approve.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let page = app.client.get(app.url(&forged)).send().await.unwrap();
    assert_eq!(page.status(), 403);
    let (status, html) = post_form(&app, &forged).await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("not valid"), "{html}");

    // A cross-site form without the token in its body: refused.
    let r = app
        .client
        .post(app.url(&approve))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(store.approvals(job.id).await.unwrap().is_empty());

    // A channel not on the allow-list: refused and recorded.
    let (status, html) = post_form(&app, &stranger).await;
    assert_eq!(status, 403, "{html}");
    assert!(
        html.contains("not on this repair's list of approvers"),
        "{html}"
    );
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().state,
        JobState::AwaitingApproval
    );

    // The allowed link decides; used again, it is refused; the other channel's link finds
    // the repair decided.
    assert_eq!(post_form(&app, &approve).await.0, 200);
    let (status, html) = post_form(&app, &approve).await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("already used"), "{html}");
    let (status, html) = post_form(&app, &approve2).await;
    assert_eq!(status, 409, "{html}");
    assert!(
        html.contains("Already decided: webhook:wh1 (webhook:wh1) approved this repair"),
        "{html}"
    );

    let outcomes: Vec<(String, String)> = store
        .approvals(job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.who, a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("webhook:stranger", "not_allowed"),
            ("webhook:wh1", "approved"),
            ("webhook:wh1", "link_used"),
            ("webhook:wh2", "already_decided"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let done = one_job(&app, JobState::Succeeded).await;
    assert_eq!(runs(&store, done.id).await, 1);
    let audit = store.audit_log(20).await.unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.role == "approver").count(),
        4,
        "every click, refused or not, is audited: {audit:#?}"
    );
    assert_no_secret(&app, &[token(&approve)]);
}
both_backends!(bad_signatures_reused_links_and_strangers_are_refused_and_recorded);

async fn an_approval_after_the_alert_resolved_does_nothing_and_says_so(db: Db) {
    let hooks = StandIn::start().await;
    let app = TestApp::spawn_app(opts(db, &hooks, "10m")).await;
    app.post_webhook(alert("firing")).await;
    let (approve, _) = links(&hooks, "wh1").await;

    app.post_webhook(alert("resolved")).await;
    let job = one_job(&app, JobState::Cancelled).await;
    let (status, html) = post_form(&app, &approve).await;

    assert_eq!(status, 410, "{html}");
    assert!(html.contains("the alert resolved at"), "{html}");
    assert!(html.contains("will not run"), "{html}");
    let store = app.store().await;
    assert_eq!(runs(&store, job.id).await, 0);
    assert_eq!(
        store.approvals(job.id).await.unwrap()[0].outcome,
        "alert_resolved"
    );
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
}
both_backends!(an_approval_after_the_alert_resolved_does_nothing_and_says_so);

async fn an_expired_approval_escalates_to_humans_once_and_its_link_is_refused(db: Db) {
    // Arrange: a one-second approval; the sweep runs with the reaper (lease 2s: every 1s).
    let hooks = StandIn::start().await;
    let app = TestApp::spawn_app(opts(db, &hooks, "1s")).await;
    app.post_webhook(alert("firing")).await;
    let (approve, _) = links(&hooks, "wh1").await;

    // Act: nobody approves.
    let job = one_job(&app, JobState::Escalated).await;

    // Assert: escalated to humans, told once, never run; the link now says so.
    assert_eq!(job.error.as_deref(), Some("approval expired"));
    assert_eq!(job.started_at, None);
    let store = app.store().await;
    let escalations = store.escalations().await.unwrap();
    assert_eq!(escalations.len(), 1, "{escalations:#?}");
    assert_eq!(escalations[0].kind, "human");
    assert_eq!(
        escalations[0].reason,
        "approval expired after 1s; nobody approved restart on prod/Deployment/web"
    );
    hooks
        .wait_for("the escalation message", |r| {
            r.iter()
                .any(|r| r.path == "/wh1" && r.json()["event"] == "escalation")
        })
        .await;
    let (status, html) = post_form(&app, &approve).await;
    assert_eq!(status, 410, "{html}");
    assert!(html.contains("approval expired"), "{html}");
    assert_eq!(runs(&store, job.id).await, 0);
    // Later sweeps find nothing more to do. The scenario is a window in which a second
    // expiry would show: two more sweep ticks (one per second).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(store.escalations().await.unwrap().len(), 1);
    assert_eq!(messages(&hooks, "wh1", "escalation").len(), 1);
}
both_backends!(an_expired_approval_escalates_to_humans_once_and_its_link_is_refused);

async fn concurrent_approvals_run_the_repair_once(db: Db) {
    let hooks = StandIn::start().await;
    let app = TestApp::spawn_app(opts(db, &hooks, "10m")).await;
    app.post_webhook(alert("firing")).await;
    let (approve, _) = links(&hooks, "wh1").await;
    let (approve2, _) = links(&hooks, "wh2").await;

    // The same link twice and the other channel's link, all at once.
    let (a, b, c) = tokio::join!(
        post_form(&app, &approve),
        post_form(&app, &approve),
        post_form(&app, &approve2)
    );

    let ok = [&a, &b, &c].iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 1, "{:?}", [a.0, b.0, c.0]);
    assert!([&a, &b, &c].iter().all(|r| r.0 == 200 || r.0 == 409));
    let job = one_job(&app, JobState::Succeeded).await;
    assert_eq!(runs(&app.store().await, job.id).await, 1);
    let approved = app
        .store()
        .await
        .approvals(job.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.outcome == "approved")
        .count();
    assert_eq!(approved, 1);
}
both_backends!(concurrent_approvals_run_the_repair_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgresql_approve_a_repair_once() {
    if common::postgres_available().await.is_none() {
        assert!(!common::in_ci(), "PostgreSQL is required in CI");
        return;
    }
    let hooks = StandIn::start().await;
    let one = TestApp::spawn(opts(Db::Postgres, &hooks, "10m")).await;
    let two = TestApp::spawn_in(
        one.dir.clone(),
        one.db.clone(),
        opts(Db::Postgres, &hooks, "10m"),
    )
    .await;
    one.post_webhook(alert("firing")).await;
    let (approve, _) = links(&hooks, "wh1").await;
    let (approve2, _) = links(&hooks, "wh2").await;

    let (a, b) = tokio::join!(post_form(&one, &approve), post_form(&two, &approve2));

    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let job = one_job(&one, JobState::Succeeded).await;
    assert_eq!(runs(&one.store().await, job.id).await, 1);
    assert_no_secret(&one, &[token(&approve)]);
    assert_no_secret(&two, &[token(&approve2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_external_url_the_message_says_how_to_approve_through_the_api() {
    let hooks = StandIn::start().await;
    let jwt = "api-secret-0123456789abcdef0123456789";
    let app = TestApp::spawn_app(
        Spawn::new(Db::Sqlite)
            .rules(&rules("10m"))
            .config(&config(&hooks, false))
            .env("AIOPS_JWT_SECRET", jwt),
    )
    .await;
    app.post_webhook(alert("firing")).await;
    let job = one_job(&app, JobState::AwaitingApproval).await;
    let reqs = hooks
        .wait_for("the approval request", |r| {
            r.iter()
                .any(|r| r.path == "/wh1" && r.json()["event"] == "approval_requested")
        })
        .await;
    let msg = reqs.iter().find(|r| r.path == "/wh1").unwrap().json();
    assert_eq!(msg["data"]["approval"]["approve_url"], "");
    let text = msg["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("POST /api/repairs/{}/approve", job.id)),
        "{text}"
    );

    // The API decides as its token's subject: someone off the list is refused, an
    // approver approves.
    let stranger = common::api::issue(&app, jwt, "telegram:7", "prod", "editor");
    let path = format!("/api/repairs/{}/approve", job.id);
    let (s, body) = app.api_post(&stranger, &path, serde_json::json!({})).await;
    assert_eq!(
        (s.as_u16(), body["outcome"].as_str()),
        (403, Some("not_allowed"))
    );
    let viewer = common::api::issue(&app, jwt, "telegram:42", "prod", "viewer");
    let (s, _) = app.api_post(&viewer, &path, serde_json::json!({})).await;
    assert_eq!(s.as_u16(), 403, "a viewer decides nothing");
    let approver = common::api::issue(&app, jwt, "telegram:42", "prod", "editor");
    let (s, body) = app.api_post(&approver, &path, serde_json::json!({})).await;
    assert_eq!(
        (s.as_u16(), body["outcome"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    let done = one_job(&app, JobState::Succeeded).await;
    let recorded = app.store().await.approvals(done.id).await.unwrap();
    assert_eq!(recorded.last().unwrap().via, "api");
    // Without links, /approve/* says links are off.
    let r = app
        .client
        .get(app.url("/approve/x.y.z"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

async fn each_step_of_a_chain_in_approve_mode_waits_for_its_own_approval(db: Db) {
    // Arrange: every rollout fails, so the approved restart fails and the chain goes on.
    let hooks = StandIn::start().await;
    let state = common::repo().join("tests/fixtures/cluster-failing.yaml");
    let rules = rules("10m").replace(
        "    mode: approve",
        "    escalate: [{playbook: rollback}]\n    mode: approve",
    );
    let app = TestApp::spawn_app(
        Spawn::new(db)
            .rules(&rules)
            .config(&config(&hooks, true))
            .env("AIOPS_CLUSTER_STATE_FILE", state.to_str().unwrap()),
    )
    .await;
    app.post_webhook(alert("firing")).await;
    let (approve, _) = links(&hooks, "wh1").await;

    // Act
    assert_eq!(post_form(&app, &approve).await.0, 200);

    // Assert: the restart ran and failed; the rollback waits, asked for on its own.
    let jobs = app
        .wait_for_jobs("the next step to wait", |j| {
            j.len() == 2 && j[1].state == JobState::AwaitingApproval
        })
        .await;
    assert_eq!(jobs[0].state, JobState::Escalated);
    assert_eq!(jobs[1].playbook, "rollback");
    assert_eq!(jobs[1].started_at, None);
    let asked = hooks
        .wait_for("the second approval request", |r| {
            r.iter()
                .filter(|r| r.path == "/wh1" && r.json()["event"] == "approval_requested")
                .count()
                == 2
        })
        .await;
    let second = asked
        .iter()
        .filter(|r| r.path == "/wh1" && r.json()["event"] == "approval_requested")
        .nth(1)
        .unwrap()
        .json();
    assert_eq!(second["data"]["approval"]["job_id"], jobs[1].id);
    assert!(
        second["text"]
            .as_str()
            .unwrap()
            .starts_with("aiops wants to run rollback on prod/Deployment/web"),
        "{second}"
    );
}
both_backends!(each_step_of_a_chain_in_approve_mode_waits_for_its_own_approval);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_carries_its_own_links_clickable_and_they_approve_as_the_channel() {
    let smtp = common::stand_ins::Smtp::start("250 OK").await;
    let hooks = StandIn::start().await;
    let rules = rules("10m").replace("\"webhook:wh1\"", "\"email:oncall-mail\"");
    let config = format!(
        "external_url: {EXTERNAL}\napproval_secret: {SECRET}\nnotify:\n  channels:\n    \
         oncall-mail: {{type: email, smtp_url: \"smtp://127.0.0.1:{}\", from: aiops@example.com, to: [ops@example.com]}}\n    \
         wh2: {{type: webhook, url: \"{}/wh2\"}}\n  routes:\n    - channels: [oncall-mail, wh2]\n",
        smtp.port, hooks.url
    );
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).rules(&rules).config(&config)).await;
    app.post_webhook(alert("firing")).await;

    let mail = common::wait::until(
        "the approval email",
        common::wait::DEFAULT_WITHIN,
        async || smtp.mails().into_iter().next(),
        String::new,
    )
    .await;
    // The MIME parts, quoted-printable decoded (soft line breaks and `=3D`).
    let data = mail
        .data
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = data
        .find(&format!("Approve: {EXTERNAL}/approve/"))
        .unwrap_or_else(|| panic!("{data}"));
    let approve = data[start + "Approve: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .strip_prefix(EXTERNAL)
        .unwrap()
        .to_string();
    assert!(
        data.contains(&format!("<a href=\"{EXTERNAL}{approve}\">")),
        "the HTML part links it: {data}"
    );
    let (status, html) = post_form(&app, &approve).await;
    assert_eq!(status, 200, "{html}");
    let job = one_job(&app, JobState::Succeeded).await;
    let recorded = app.store().await.approvals(job.id).await.unwrap();
    assert_eq!(
        (recorded[0].who.as_str(), recorded[0].via.as_str()),
        ("email:oncall-mail", "oncall-mail")
    );
}
