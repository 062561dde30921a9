//! Shadow mode through the daemon, on SQLite and PostgreSQL: a shadow rule decides and dry-runs
//! its playbook but changes nothing in the (in-memory) cluster; it neither blocks a real rule
//! on the same target nor uses its budget or cooldown; its evidence (would act, resolved on its
//! own, median time, would-be actions) equals values computed by hand from a seeded history, in
//! the API and in `aiops kb shadow`; and every message, metric and API item says "shadow".

use crate::both_backends;
use crate::common;

use std::collections::HashMap;

use aiops::store::{Job, JobState};
use common::payload::{alert, group, minutes_ago};
use common::stand_ins::StandIn;
use common::{Db, Spawn, TestApp, raw_db, run_cli};
use serde_json::{Value, json};

const SECRET: &str = "shadow-test-secret-0123456789abcdef";

/// A shadow rule and a real rule acting on the same Deployment (prod/web, memory limit 512Mi
/// in tests/fixtures/cluster-state.yaml). The shadow rule sees every `MemHigh`; the real one
/// only those labelled `real="yes"`. Both have a budget of one repair an hour, the real one
/// also a cooldown of an hour.
const MEMORY_RULES: &str = r#"
rules:
  - name: mem-shadow
    mode: shadow
    matchers: ['alertname="MemHigh"']
    continue: true
    playbook: scale_memory
    params: {max_limit: 4Gi}
    budget: {max: 1, window: 1h}
  - name: mem-real
    matchers: ['alertname="MemHigh"', 'real="yes"']
    playbook: scale_memory
    params: {max_limit: 4Gi}
    cooldown: 1h
    budget: {max: 1, window: 1h}
"#;

fn mem_high(n: &str, real: bool) -> String {
    let mut labels = vec![
        ("alertname", "MemHigh"),
        ("namespace", "prod"),
        ("app", "web"),
        ("n", n),
    ];
    if real {
        labels.push(("real", "yes"));
    }
    // The wait counts from startsAt: a fixed date made these jobs due (and the lanes empty)
    // once the date was a day old.
    group(vec![alert("firing", &labels, &minutes_ago(5))]).to_string()
}

/// The detail of `job`'s one `set_memory` step.
async fn set_memory_step(app: &TestApp, job: i64) -> String {
    let steps = app.store().await.job_steps(job).await.unwrap();
    let set: Vec<_> = steps.iter().filter(|s| s.action == "set_memory").collect();
    assert_eq!(set.len(), 1, "{steps:#?}");
    set[0].detail.clone()
}

async fn a_shadow_rule_changes_nothing_and_never_takes_a_real_rules_target_budget_or_cooldown(
    db: Db,
) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(MEMORY_RULES)).await;

    // 1. Only the shadow rule matches: it would raise the limit, and records that it would.
    let body = app.post_webhook_json(mem_high("1", false)).await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let shadow = &jobs[0];
    assert_eq!((shadow.rule.as_str(), shadow.dry_run), ("mem-shadow", true));
    assert_eq!(shadow.spec.mode, aiops::rules::Mode::Shadow);
    let would = set_memory_step(&app, shadow.id).await;
    assert!(
        would.starts_with("dry run: would set memory of prod/Deployment/web container app"),
        "{would}"
    );

    // 2. Both rules match. The shadow rule used its own budget in step 1, so it is refused;
    //    the real rule's budget and cooldown know nothing of shadow jobs, so it acts.
    let body = app.post_webhook_json(mem_high("2", true)).await;
    assert_eq!(
        (body["jobs"].as_array().unwrap().len(), &body["refused"]),
        (1, &json!(1)),
        "{body}"
    );
    let jobs = app
        .wait_for_jobs("the real repair to end", |j| {
            j.len() == 2 && j[1].state.is_terminal()
        })
        .await;
    let real = &jobs[1];
    assert_eq!(
        (real.rule.as_str(), real.state, real.dry_run),
        ("mem-real", JobState::Succeeded, false),
        "{real:#?}"
    );
    // The real repair starts from the fixture's 512Mi and sets exactly what the shadow run
    // said it would: the shadow run changed nothing.
    let did = set_memory_step(&app, real.id).await;
    assert_eq!(format!("dry run: would {did}"), would);
    assert!(
        real.outcome.as_deref().unwrap().contains("512Mi -> "),
        "{:?}",
        real.outcome
    );
    let store = app.store().await;
    let refused = store.refusals().await.unwrap();
    assert_eq!(
        refused,
        [(
            "mem-shadow".to_string(),
            Some("prod/Deployment/web".to_string()),
            "budget".to_string()
        )]
    );

    // 3. The real rule's own history does count for it: now it is in its cooldown.
    let body = app.post_webhook_json(mem_high("3", true)).await;
    assert_eq!(body["refused"], 2, "{body}");
    let refused = store.refusals().await.unwrap();
    assert_eq!(refused[2].0, "mem-real");
    assert_eq!(refused[2].2, "cooldown");
}
both_backends!(
    a_shadow_rule_changes_nothing_and_never_takes_a_real_rules_target_budget_or_cooldown
);

/// A shadow rule and a real rule on one alert: one job each, side by side, in one webhook.
const SIDE_BY_SIDE: &str = r#"
rules:
  - name: restart-shadow
    mode: shadow
    matchers: ['alertname="Down"']
    continue: true
    playbook: restart
  - name: restart-real
    matchers: ['alertname="Down"']
    playbook: restart
"#;

async fn a_shadow_job_and_a_real_job_hold_the_same_target_at_the_same_time(db: Db) {
    let hook = StandIn::start().await;
    let config = format!(
        "notify:\n  channels:\n    wh: {{type: webhook, url: \"{}/hook\"}}\n  routes:\n    - channels: [wh]\n",
        hook.url
    );
    // A process: `aiops serve` reads the configuration file as an operator's would.
    let app = TestApp::spawn(
        Spawn::new(db)
            .rules(SIDE_BY_SIDE)
            .config(&config)
            .env("AIOPS_JWT_SECRET", SECRET),
    )
    .await;
    let down = group(vec![alert(
        "firing",
        &[("alertname", "Down"), ("namespace", "prod"), ("app", "web")],
        "2026-11-30T08:00:00Z",
    )]);
    let body = app.post_webhook_json(down.to_string()).await;
    // Neither lane's job holds the target against the other: no target_busy.
    assert_eq!(
        (body["jobs"].as_array().unwrap().len(), &body["refused"]),
        (2, &json!(0)),
        "{body}"
    );
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let by_rule = |rule: &str| -> Job { jobs.iter().find(|j| j.rule == rule).unwrap().clone() };
    let (shadow, real) = (by_rule("restart-shadow"), by_rule("restart-real"));
    let store = app.store().await;
    let steps = |id| {
        let store = store.clone();
        async move {
            let s = store.job_steps(id).await.unwrap();
            s.into_iter()
                .find(|s| s.action == "restart")
                .unwrap()
                .detail
        }
    };
    assert_eq!(
        steps(shadow.id).await,
        "dry run: would restart prod/Deployment/web"
    );
    assert_eq!(steps(real.id).await, "restart prod/Deployment/web");

    // API: every repair item carries its mode, and `mode=` filters.
    let admin = common::api::token(SECRET, aiops::auth::Role::Admin, &[]);
    let (s, all) = app.api_get(&admin, "/api/repairs").await;
    assert_eq!(s, 200, "{all}");
    let modes: HashMap<String, String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["rule"].as_str().unwrap().to_string(),
                j["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(modes["restart-shadow"], "shadow");
    assert_eq!(modes["restart-real"], "auto");
    let (_, only) = app.api_get(&admin, "/api/repairs?mode=shadow").await;
    let ids: Vec<i64> = only["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [shadow.id]);
    let (s, bad) = app.api_get(&admin, "/api/repairs?mode=bold").await;
    assert_eq!((s.as_u16(), &bad["field"]), (400, &json!("mode")), "{bad}");

    // Metrics: each transition is counted under its job's mode.
    let m = app.metrics().await;
    for series in [
        "aiops_jobs_total{mode=\"shadow\",state=\"succeeded\"} 1",
        "aiops_jobs_total{mode=\"auto\",state=\"succeeded\"} 1",
        "aiops_jobs_total{mode=\"shadow\",state=\"running\"} 1",
        "aiops_jobs_total{mode=\"approve\",state=\"succeeded\"} 0",
    ] {
        assert!(m.contains(series), "missing {series} in\n{m}");
    }

    // Messages: the shadow job's say so, in the subject and the event; the real one's do not.
    let reqs = hook
        .wait_for("started and ended, for both jobs", |r| r.len() == 4)
        .await;
    let of = |job: i64| -> Vec<Value> {
        reqs.iter()
            .map(|r| r.json())
            .filter(|j| j["data"]["job_id"] == job)
            .collect()
    };
    let shadow_msgs = of(shadow.id);
    assert_eq!(shadow_msgs.len(), 2, "{reqs:#?}");
    for msg in &shadow_msgs {
        let subject = msg["subject"].as_str().unwrap();
        assert!(subject.starts_with("[shadow] [aiops] "), "{subject}");
        assert!(!subject.contains("Repaired"), "{subject}");
        assert_eq!(msg["data"]["mode"], "shadow");
        assert!(
            msg["text"]
                .as_str()
                .unwrap()
                .starts_with("Shadow mode: a dry run, nothing was changed."),
            "{msg}"
        );
    }
    assert_eq!(
        shadow_msgs[1]["subject"],
        "[shadow] [aiops] Would have repaired (dry run, nothing changed): web (prod)"
    );
    for msg in of(real.id) {
        assert_eq!(msg["data"]["mode"], "auto");
        assert!(
            !msg["subject"].as_str().unwrap().contains("shadow"),
            "{msg}"
        );
    }
}
both_backends!(a_shadow_job_and_a_real_job_hold_the_same_target_at_the_same_time);

/// One shadow rule whose alerts resolve, or not, at chosen times after its decisions.
const FLAKY: &str = r#"
rules:
  - name: flaky-shadow
    mode: shadow
    matchers: ['alertname="Flaky"']
    playbook: restart
    verify: {resolved_within: 10m}
"#;

const STARTS_AT: &str = "2026-11-01T00:00:00Z";

fn flaky(status: &str, n: usize) -> Value {
    let n = n.to_string();
    alert(
        status,
        &[
            ("alertname", "Flaky"),
            ("namespace", "prod"),
            ("app", "web"),
            ("n", &n),
        ],
        STARTS_AT,
    )
}

async fn a_shadow_rules_evidence_equals_values_computed_by_hand(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db).rules(FLAKY).env("AIOPS_JWT_SECRET", SECRET)).await;
    const MIN: i64 = 60_000;
    let now = aiops::store::now_ms();
    // (decided this long ago, resolved this long after the decision) per occurrence; the rule's
    // window is 10 minutes.
    let history: [(i64, Option<i64>); 7] = [
        (180 * MIN, Some(2 * MIN)),  // resolved on its own after 120 s
        (180 * MIN, Some(6 * MIN)),  // resolved on its own after 360 s
        (180 * MIN, Some(4 * MIN)),  // resolved on its own after 240 s
        (180 * MIN, Some(30 * MIN)), // resolved, but only after the window: the action was needed
        (180 * MIN, None),           // never resolved, window over: the action was needed
        (MIN, None),                 // still firing, window not over: undecided
        (8 * 1440 * MIN, Some(MIN)), // 8 days ago: outside the default 7-day report
    ];
    // Seeded through the daemon: one alert at a time (one shadow job per target at a time).
    let mut ids = Vec::new();
    for n in 0..history.len() {
        let body = app
            .post_webhook_json(group(vec![flaky("firing", n)]).to_string())
            .await;
        ids.push(body["jobs"][0].as_i64().unwrap_or_else(|| panic!("{body}")));
        app.wait_for_jobs("the shadow run to end", |j| {
            j.len() == n + 1 && j[n].state.is_terminal()
        })
        .await;
    }
    // Then backdated, and resolved at the chosen times.
    let raw = raw_db(&app.db.url).await;
    let mut resolves = Vec::new();
    for (n, (ago, after)) in history.iter().enumerate() {
        let decided = now - ago;
        sqlx::query("UPDATE jobs SET created_at = $1 WHERE id = $2")
            .bind(decided)
            .bind(ids[n])
            .execute(&raw)
            .await
            .unwrap();
        if let Some(after) = after {
            let mut resolve = flaky("resolved", n);
            resolve["endsAt"] = json!(
                chrono::DateTime::from_timestamp_millis(decided + after)
                    .unwrap()
                    .to_rfc3339()
            );
            resolves.push(resolve);
        }
    }
    let body = app.post_webhook_json(group(resolves).to_string()).await;
    assert_eq!(body["accepted"], 5, "{body}");

    // By hand: 6 decisions in the window; 3 resolved within 10 minutes (120 s, 240 s, 360 s);
    // 1 undecided; so the share is 3 of 5 decided, and the median 240 s. Every run would have
    // restarted prod/web: 6 times in the window.
    let admin = common::api::token(SECRET, aiops::auth::Role::Admin, &[]);
    let (s, api) = app.api_get(&admin, "/api/kb/rules/flaky-shadow").await;
    assert_eq!(s, 200, "{api}");
    assert_eq!(api["rule"], "flaky-shadow");
    assert_eq!(api["would_act"], 6, "{api:#}");
    assert_eq!(api["self_resolved"], 3, "{api:#}");
    assert_eq!(api["undecided"], 1, "{api:#}");
    assert_eq!(api["self_resolved_share"], 0.6, "{api:#}");
    assert_eq!(api["self_resolve_median_s"], 240.0, "{api:#}");
    let restarts: Vec<&Value> = api["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "restart")
        .collect();
    assert_eq!(
        restarts,
        [
            &json!({"action": "restart", "detail": "dry run: would restart prod/Deployment/web", "count": 6})
        ],
        "{api:#}"
    );
    // The 30-day window takes the old occurrence in: one more self-resolved decision.
    let (_, month) = app
        .api_get(&admin, "/api/kb/rules/flaky-shadow?since=30d")
        .await;
    assert_eq!(
        (&month["would_act"], &month["self_resolved"]),
        (&json!(7), &json!(4)),
        "{month:#}"
    );
    // Another app's token sees none of prod's evidence.
    let other = common::api::token(SECRET, aiops::auth::Role::Viewer, &["staging"]);
    let (s, hidden) = app.api_get(&other, "/api/kb/rules/flaky-shadow").await;
    assert_eq!(
        (s.as_u16(), &hidden["would_act"]),
        (200, &json!(0)),
        "{hidden}"
    );

    // The command prints the same keys and numbers.
    let env = HashMap::from([("AIOPS_DATABASE_URL", app.db.url.clone())]);
    let cli = |args: &[&str]| -> Value {
        let (status, out, err) = run_cli(app.dir.path(), args, &env);
        assert!(status.success(), "{args:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let without_since = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("since");
        v
    };
    let one = cli(&["kb", "shadow", "--rule", "flaky-shadow", "--json"]);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&one), keys(&api));
    assert_eq!(without_since(&one), without_since(&api));
    let all = cli(&["kb", "shadow", "--json"]);
    assert_eq!(all["rules"].as_array().unwrap().len(), 1, "{all:#}");
    assert_eq!(all["rules"][0], without_since(&api));
    let (status, table, err) = run_cli(app.dir.path(), &["kb", "shadow"], &env);
    assert!(status.success(), "{table}{err}");
    assert!(
        table.lines().any(|l| l.starts_with("flaky-shadow")
            && l.split_whitespace().collect::<Vec<_>>()[1..] == ["6", "3", "60%", "1", "240s"]),
        "{table}"
    );
    assert!(
        table.contains("6x restart: dry run: would restart prod/Deployment/web"),
        "{table}"
    );
}
both_backends!(a_shadow_rules_evidence_equals_values_computed_by_hand);

/// A broad shadow rule next to a real one; both wait a day, so their jobs stay pending.
const WIDE_SHADOW: &str = r#"
rules:
  - name: wide-shadow
    mode: shadow
    matchers: ['alertname="Busy"']
    continue: true
    playbook: restart
    wait: 24h
  - name: restart-real
    matchers: ['alertname="Busy"', 'real="yes"']
    playbook: restart
    wait: 24h
"#;

fn busy(app: &str, real: bool) -> String {
    let mut labels = vec![("alertname", "Busy"), ("namespace", "prod"), ("app", app)];
    if real {
        labels.push(("real", "yes"));
    }
    // The wait counts from startsAt: a fixed date made these jobs due (and the lanes empty)
    // once the date was a day old.
    group(vec![alert("firing", &labels, &minutes_ago(5))]).to_string()
}

async fn shadow_jobs_never_fill_the_queue_of_real_repairs_and_a_full_shadow_lane_only_refuses_the_shadow_rule(
    db: Db,
) {
    let app = TestApp::spawn_app(
        Spawn::new(db)
            .rules(WIDE_SHADOW)
            .env("AIOPS_QUEUE_CAPACITY", "1"),
    )
    .await;

    // 1. The shadow rule alone: its job fills the shadow lane's bound of one.
    let body = app.post_webhook_json(busy("a", false)).await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");

    // 2. Both rules match: the shadow rule finds its lane full and is refused; the real
    //    rule's lane is empty, so the webhook is answered 200 and the real repair is queued.
    let r = app.post_webhook(busy("b", true)).await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (
            status,
            body["jobs"].as_array().map(Vec::len),
            &body["refused"]
        ),
        (200, Some(1), &json!(1)),
        "{body}"
    );
    let store = app.store().await;
    let refused = store.refusals().await.unwrap();
    assert_eq!(
        refused,
        [(
            "wide-shadow".to_string(),
            Some("prod/Deployment/b".to_string()),
            "queue_full".to_string()
        )]
    );
    let raw = raw_db(&app.db.url).await;
    let detail: String =
        sqlx::query_scalar("SELECT detail FROM decisions WHERE reason = 'queue_full'")
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(
        detail,
        "shadow rule wide-shadow (changes nothing): 1 shadow jobs are already pending (jobs.queue_capacity 1)"
    );

    // 3. The real lane's own bound still holds: a full real lane is a 503 (Alertmanager
    //    retries), with nothing recorded.
    let r = app.post_webhook(busy("c", true)).await;
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(store.refusals().await.unwrap().len(), 1);

    // Metrics keep the shadow rule's refusal apart from real ones, every pair published.
    let metrics = app.metrics().await;
    for line in [
        r#"aiops_guard_refusals_total{mode="shadow",reason="queue_full"} 1"#,
        r#"aiops_guard_refusals_total{mode="auto",reason="queue_full"} 0"#,
        r#"aiops_guard_refusals_total{mode="approve",reason="budget"} 0"#,
        r#"aiops_alert_decisions_total{mode="shadow",reason="queue_full",verdict="refused"} 1"#,
        r#"aiops_alert_decisions_total{mode="auto",reason="plan",verdict="job"} 1"#,
        r#"aiops_alert_decisions_total{mode="shadow",reason="dry_run",verdict="job"} 1"#,
        r#"aiops_alert_decisions_total{mode="none",reason="no_rule",verdict="skipped"} 0"#,
        "aiops_queue_depth 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}
both_backends!(
    shadow_jobs_never_fill_the_queue_of_real_repairs_and_a_full_shadow_lane_only_refuses_the_shadow_rule
);

/// A shadow rule listed first and a real rule, on one alert, for one worker.
const SHADOW_FIRST: &str = r#"
rules:
  - name: first-shadow
    mode: shadow
    matchers: ['alertname="Down"']
    continue: true
    playbook: restart
  - name: then-real
    matchers: ['alertname="Down"']
    playbook: restart
"#;

async fn a_worker_claims_a_due_real_repair_before_an_older_shadow_job(db: Db) {
    let app =
        TestApp::spawn_app(Spawn::new(db).rules(SHADOW_FIRST).env("AIOPS_WORKERS", "1")).await;
    let down = group(vec![alert(
        "firing",
        &[("alertname", "Down"), ("namespace", "prod"), ("app", "web")],
        "2026-11-30T08:00:00Z",
    )]);
    // One transaction inserts the shadow job first (the lower id, the same not_before).
    let body = app.post_webhook_json(down.to_string()).await;
    let ids: Vec<i64> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{body}");
    let jobs = app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let id_of = |rule: &str| jobs.iter().find(|j| j.rule == rule).unwrap().id;
    let (shadow, real) = (id_of("first-shadow"), id_of("then-real"));
    assert!(shadow < real, "{jobs:#?}");
    let raw = raw_db(&app.db.url).await;
    let claimed: Vec<i64> =
        sqlx::query_scalar("SELECT job_id FROM job_events WHERE to_state = 'running' ORDER BY id")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(claimed, [real, shadow]);
}
both_backends!(a_worker_claims_a_due_real_repair_before_an_older_shadow_job);

/// What each default message about a shadow job says, in both languages: marked in the subject
/// and the first line, never "Repaired" / "自動修復成功"; the same event in `auto` is unmarked.
#[test]
fn the_default_templates_mark_every_shadow_job_message_in_english_and_traditional_chinese() {
    use aiops::notify::config::Language;
    use aiops::notify::template::Templates;
    use aiops::notify::{Event, EventKind};
    let event = |kind, mode: &str| Event {
        kind,
        app: "web".into(),
        namespace: "prod".into(),
        target: "prod/Deployment/web".into(),
        problem: "Down".into(),
        action: "restart".into(),
        mode: mode.into(),
        ..Event::default()
    };
    let cases = [
        (
            Language::En,
            "[shadow] ",
            "Shadow mode: a dry run, nothing was changed.",
            "Repaired",
        ),
        (
            Language::ZhTw,
            "[影子模式] ",
            "影子模式：這是試運行，沒有變更任何東西。",
            "自動修復成功",
        ),
    ];
    for (lang, mark, first_line, real_word) in cases {
        let t = Templates::new(lang, &Default::default()).unwrap();
        for kind in [
            EventKind::RepairStarted,
            EventKind::AutoRepairSuccess,
            EventKind::AutoRepairFailed,
            EventKind::Escalation,
            EventKind::PlaybookMessage,
        ] {
            let (subject, body) = t.render(&event(kind, "shadow"));
            assert!(subject.starts_with(mark), "{lang:?} {kind:?}: {subject}");
            assert!(!subject.contains(real_word), "{lang:?} {kind:?}: {subject}");
            assert!(body.starts_with(first_line), "{lang:?} {kind:?}: {body}");
            let (subject, body) = t.render(&event(kind, "auto"));
            assert!(!subject.starts_with(mark), "{lang:?} {kind:?}: {subject}");
            assert!(!body.starts_with(first_line), "{lang:?} {kind:?}: {body}");
        }
    }
    let zh = Templates::new(Language::ZhTw, &Default::default()).unwrap();
    assert_eq!(
        zh.render(&event(EventKind::AutoRepairSuccess, "shadow")).0,
        "[影子模式] [aiops] 將會修復（試運行，未變更任何東西）：web（prod）"
    );
}
