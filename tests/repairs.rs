//! Whole repairs through the daemon (in-process: what `aiops serve` runs, without a process):
//! playbook runs on the in-memory cluster, verification, escalation chains and their end
//! ("manual intervention required").

use crate::both_backends;
use crate::common;

use aiops::store::JobState;
use common::stand_ins::StandIn;
use common::{Db, Spawn, TestApp, payload, repo};
use serde_json::Value;

fn alert(repair: &str, app: &str, starts_at: &str) -> String {
    payload(
        &[(
            &[
                ("alertname", "Trouble"),
                ("auto_repair", repair),
                ("namespace", "prod"),
                ("app", app),
            ],
            "firing",
        )],
        starts_at,
    )
}

async fn a_restart_that_does_not_roll_out_walks_the_chain_then_asks_for_a_human(db: Db) {
    let state = repo().join("tests/fixtures/cluster-failing.yaml");
    let app =
        TestApp::spawn_app(Spawn::new(db).env("AIOPS_CLUSTER_STATE_FILE", state.to_str().unwrap()))
            .await;
    let body: Value = app
        .post_webhook_json(alert("restart", "web", "2026-11-26T04:00:00Z"))
        .await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
    let jobs = app
        .wait_for_jobs("restart then rollback to end", |j| {
            j.len() == 2 && j.iter().all(|j| j.state == JobState::Escalated)
        })
        .await;
    assert_eq!(
        (jobs[0].playbook.as_str(), jobs[1].playbook.as_str()),
        ("restart", "rollback")
    );
    assert_eq!(jobs[1].parent_id, Some(jobs[0].id));
    assert!(
        jobs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("progress deadline"),
        "{:?}",
        jobs[0].error
    );
    let store = app.store().await;
    let esc = store.escalations().await.unwrap();
    let last = esc.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.destination.as_str()),
        ("notify", "default")
    );
    assert!(
        last.reason
            .starts_with("manual intervention required on prod/Deployment/web"),
        "{}",
        last.reason
    );
    assert!(
        last.reason.contains(&format!("job {} restart", jobs[0].id)),
        "{}",
        last.reason
    );
    assert!(
        last.reason
            .contains(&format!("job {} rollback", jobs[1].id)),
        "{}",
        last.reason
    );
    // Every change the playbooks made is a recorded step.
    let steps = store.job_steps(jobs[0].id).await.unwrap();
    assert_eq!(steps[0].action, "restart");
}
both_backends!(a_restart_that_does_not_roll_out_walks_the_chain_then_asks_for_a_human);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_raises_the_memory_limit_and_the_repair_is_verified() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    app.post_webhook(alert("oom_handler", "web", "2026-11-26T04:00:00Z"))
        .await;
    let jobs = app
        .wait_all_jobs_in(&[JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(jobs[0].state, JobState::Succeeded, "{jobs:#?}");
    let outcome = jobs[0].outcome.as_deref().unwrap();
    assert!(outcome.contains("512Mi -> 615Mi"), "{outcome}");
    assert!(
        outcome.contains("verified: rollout of prod/Deployment/web complete"),
        "{outcome}"
    );
    let steps = app.store().await.job_steps(jobs[0].id).await.unwrap();
    let actions: Vec<_> = steps.iter().map(|s| s.action.as_str()).collect();
    assert_eq!(
        actions,
        ["set_memory", "wait_rollout", "outcome", "verify"],
        "{steps:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_backend_a_repair_is_inconclusive_and_goes_to_humans_once() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).env("AIOPS_CLUSTER_STATE_FILE", "")).await;
    app.post_webhook(alert("restart", "web", "2026-11-26T04:00:00Z"))
        .await;
    let jobs = app.wait_all_jobs_in(&[JobState::Escalated]).await;
    assert_eq!(
        jobs.len(),
        1,
        "inconclusive never walks the chain: {jobs:#?}"
    );
    let error = jobs[0].error.as_deref().unwrap();
    assert!(error.starts_with("inconclusive:"), "{error}");
    assert!(
        error.contains("restart.rhai:") && error.contains("no Kubernetes backend"),
        "{error}"
    );
    let esc = app.store().await.escalations().await.unwrap();
    assert_eq!(esc.len(), 1);
    // The shipped restart rule's chain names the `default` route: that is who is told.
    assert_eq!(
        (esc[0].kind.as_str(), esc[0].destination.as_str()),
        ("notify", "default")
    );
    assert!(
        esc[0].reason.contains("could not be measured"),
        "{}",
        esc[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_fails_verification_and_escalates_along_the_chain() {
    let health = StandIn::answering(500).await;
    let url = format!("{}/healthz", health.url);
    let rules = format!(
        "rules:\n  - name: r\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n    verify: {{health_url: \"{url}\"}}\n    escalate:\n      - playbook: rollback\n"
    );
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).rules(&rules)).await;
    app.post_webhook(alert("restart", "api", "2026-11-26T04:00:00Z"))
        .await;
    let jobs = app
        .wait_for_jobs("the chain to end", |j| {
            j.len() == 2 && j.iter().all(|j| j.state == JobState::Escalated)
        })
        .await;
    assert!(
        jobs[0].error.as_deref().unwrap().contains("answered 500"),
        "{:?}",
        jobs[0].error
    );
    let path: Vec<_> = app
        .store()
        .await
        .job_events(jobs[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        path,
        ["queued", "running", "verifying", "failed", "escalated"]
    );
}

/// A restart verified by its alert resolving within 20 s.
const VERIFIED_BY_RESOLVE: &str = "rules:\n  - name: r\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n    verify: {resolved_within: 20s}\n";

/// Fires the restart alert of `other`, waits until its repair is being verified, then
/// resolves the alert.
async fn resolve_while_verifying(app: &TestApp) {
    let fire = alert("restart", "other", "2026-11-26T04:00:00Z");
    app.post_webhook(fire.clone()).await;
    app.wait_for_jobs("verification to start", |j| {
        j.first().is_some_and(|j| j.state == JobState::Verifying)
    })
    .await;
    app.post_webhook(fire.replace("\"firing\"", "\"resolved\""))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_is_verified_by_the_alert_resolving_in_time() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).rules(VERIFIED_BY_RESOLVE)).await;
    resolve_while_verifying(&app).await;
    let jobs = app
        .wait_all_jobs_in(&[JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(jobs[0].state, JobState::Succeeded, "{jobs:#?}");
    assert!(
        jobs[0]
            .outcome
            .as_deref()
            .unwrap()
            .contains("the alert resolved")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_still_firing_after_the_window_fails_verification() {
    let rules = "rules:\n  - name: r\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n    verify: {resolved_within: 1s}\n";
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).rules(rules)).await;
    app.post_webhook(alert("restart", "calm", "2026-11-26T04:00:00Z"))
        .await;
    let jobs = app
        .wait_all_jobs_in(&[JobState::Succeeded, JobState::Escalated])
        .await;
    assert_eq!(jobs[0].state, JobState::Escalated, "{jobs:#?}");
    assert!(
        jobs[0].error.as_deref().unwrap().contains("still firing"),
        "{:?}",
        jobs[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_tells_humans_what_fixed_this_alert_last_time() {
    let health = StandIn::answering(500).await;
    let url = format!("{}/healthz", health.url);
    let rules = format!(
        "rules:\n  - name: healthy\n    matchers: ['app=\"web\"']\n    playbook: restart\n  - name: checked\n    matchers: ['app=\"api\"']\n    playbook: restart\n    verify: {{health_url: \"{url}\"}}\n"
    );
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).rules(&rules)).await;
    // Last time: a restart of web fixed "Trouble" in prod, and the alert resolved 4 min after it began.
    let starts = chrono::Utc::now() - chrono::Duration::minutes(10);
    let fire = alert("restart", "web", &starts.to_rfc3339());
    app.post_webhook(fire.clone()).await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let ends = (starts + chrono::Duration::minutes(4)).to_rfc3339();
    app.post_webhook(
        fire.replace("\"firing\"", "\"resolved\"")
            .replace("0001-01-01T00:00:00Z", &ends),
    )
    .await;
    // Now api's repair fails its health check and goes to humans.
    app.post_webhook(alert("restart", "api", "2026-11-26T04:00:00Z"))
        .await;
    app.wait_for_jobs("api's repair to end", |j| {
        j.len() == 2 && j[1].state == JobState::Escalated
    })
    .await;
    let esc = app.store().await.escalations().await.unwrap();
    let text = &esc.last().unwrap().reason;
    assert!(
        text.contains("manual intervention required on prod/Deployment/api"),
        "{text}"
    );
    assert!(
        text.contains("last time, restart fixed this in 4 min (job 1)"),
        "{text}"
    );
}

/// The same alert (one fingerprint) fired twice and was repaired twice: the resolve of the
/// first firing gives its time to recover to the first repair only, and the second firing's
/// resolve to the second (matched on the firing's `startsAt`, not the fingerprint alone).
async fn a_resolve_closes_only_the_repairs_of_its_own_firing(db: Db) {
    let rules =
        "rules:\n  - name: r\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n";
    let app = TestApp::spawn_app(Spawn::new(db).rules(rules)).await;
    let (first, second) = ("2026-11-26T04:00:00Z", "2026-11-26T05:00:00Z");
    app.post_webhook(alert("restart", "web", first)).await;
    app.wait_for_jobs("the first repair", |j| {
        j.len() == 1 && j[0].state == JobState::Succeeded
    })
    .await;
    app.post_webhook(alert("restart", "web", second)).await;
    let jobs = app
        .wait_for_jobs("the second repair", |j| {
            j.len() == 2 && j.iter().all(|j| j.state == JobState::Succeeded)
        })
        .await;
    assert_eq!(jobs[0].ttr_ms, None);
    let resolve = |starts: &str, ends: &str| {
        let mut v: Value = serde_json::from_str(
            &alert("restart", "web", starts).replace("\"firing\"", "\"resolved\""),
        )
        .unwrap();
        v["alerts"][0]["endsAt"] = Value::from(ends);
        v.to_string()
    };
    // The first firing resolves 10 minutes after it started.
    app.post_webhook(resolve(first, "2026-11-26T04:10:00Z"))
        .await;
    let jobs = app
        .wait_for_jobs("the first repair's time to recover", |j| {
            j[0].ttr_ms.is_some()
        })
        .await;
    assert_eq!(jobs[0].ttr_ms, Some(600_000));
    assert_eq!(jobs[1].ttr_ms, None, "the second firing is still open");
    // The second resolves 3 minutes after it started.
    app.post_webhook(resolve(second, "2026-11-26T05:03:00Z"))
        .await;
    let jobs = app
        .wait_for_jobs("the second repair's time to recover", |j| {
            j[1].ttr_ms.is_some()
        })
        .await;
    assert_eq!(
        (jobs[0].ttr_ms, jobs[1].ttr_ms),
        (Some(600_000), Some(180_000))
    );
}
both_backends!(a_resolve_closes_only_the_repairs_of_its_own_firing);

/// A resolve that arrives while the repair is still being verified: the recovery message
/// waits for the repair's end and is sent once, by the transaction that ends it.
async fn a_resolve_during_verification_is_told_once_when_the_repair_ends(db: Db) {
    let telegram = StandIn::start().await;
    telegram.default_answer(common::stand_ins::Answer::new(
        200,
        r#"{"ok":true,"result":{"message_id":1}}"#,
    ));
    let config = format!(
        "notify:\n  channels:\n    tg: {{type: telegram, bot_token: \"1:t\", chat_id: \"1\", api_url: \"{}\"}}\n  routes:\n    - channels: [tg]\n",
        telegram.url
    );
    // `aiops serve` as a process: the in-process daemon reads no configuration file.
    let app = TestApp::spawn(Spawn::new(db).rules(VERIFIED_BY_RESOLVE).config(&config)).await;
    resolve_while_verifying(&app).await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let text =
        |r: &common::stand_ins::Request| r.json()["text"].as_str().unwrap_or_default().to_string();
    telegram
        .wait_for("the recovery message", |r| {
            r.iter().any(|r| text(r).contains("Recovered"))
        })
        .await;
    // Both transactions that could enqueue it have committed (the resolve's before its 200,
    // the repair's end before Succeeded): the outbox holds exactly what will ever be sent.
    let rows = app.store().await.notifications().await.unwrap();
    let enqueued = rows.iter().filter(|n| n.event == "alert_recovered").count();
    assert_eq!(enqueued, 1, "{rows:#?}");
    let recovered: Vec<String> = telegram
        .requests()
        .iter()
        .map(text)
        .filter(|t| t.contains("Recovered"))
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert!(
        recovered[0].contains("Recovered: Trouble on prod/Deployment/other resolved 0 minutes after the repair (restart at "),
        "{}",
        recovered[0]
    );
}
both_backends!(a_resolve_during_verification_is_told_once_when_the_repair_ends);
