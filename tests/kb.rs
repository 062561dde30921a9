//! The knowledge base: stats from a seeded history equal hand-computed values (both backends),
//! and a real repair's time to recover recorded when its alert resolves (the daemon in-process,
//! `aiops kb` as the binary), and `aiops kb --json` speaking the API's vocabulary.

use crate::both_backends;
use crate::common;

use std::collections::{BTreeMap, HashMap};

use aiops::alert::{Alert, Status};
use aiops::store::{JobState, NewAlertEvent, NewJob, Store};
use common::stand_ins::StandIn;
use common::{Db, Spawn, TestApp, TestDb, payload, run_cli};

struct Seed {
    alertname: &'static str,
    playbook: &'static str,
    namespace: &'static str,
    end: JobState,
    ttr_s: Option<i64>,
    dry_run: bool,
    age_h: i64,
}

async fn seed(store: &Store, n: i64, s: &Seed) {
    let now = aiops::store::now_ms();
    let created = now - s.age_h * 3_600_000;
    let labels: BTreeMap<String, String> = [
        ("alertname", s.alertname),
        ("namespace", s.namespace),
        ("n", &n.to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let alert = Alert {
        status: Status::Firing,
        fingerprint: aiops::alert::fingerprint(&labels),
        labels,
        annotations: BTreeMap::new(),
        starts_at: chrono::DateTime::from_timestamp_millis(created).unwrap(),
        ends_at: None,
        generator_url: String::new(),
    };
    let mut tx = store.begin_write().await.unwrap();
    let event = tx
        .insert_alert_event(&NewAlertEvent {
            alert: &alert,
            receiver: "aiops",
            group_key: "{}",
            received_at: created,
        })
        .await
        .unwrap()
        .unwrap();
    let (id, _) = tx
        .insert_job(
            &NewJob {
                alert_event_id: event,
                fingerprint: alert.fingerprint.clone(),
                alertname: s.alertname.into(),
                rule: "r".into(),
                spec: aiops::job::JobSpec::new(s.playbook),
                chain_index: 0,
                parent_id: None,
                target_namespace: s.namespace.into(),
                target_kind: "Deployment".into(),
                target_name: format!("app{n}"),
                dry_run: s.dry_run,
                timeout_ms: None,
                not_before: created,
            },
            created,
        )
        .await
        .unwrap()
        .unwrap();
    let path: &[JobState] = if s.end == JobState::Succeeded {
        &[JobState::Running, JobState::Verifying, JobState::Succeeded]
    } else {
        &[JobState::Running, JobState::Failed, JobState::Escalated]
    };
    let mut from = JobState::Queued;
    for to in path {
        assert!(
            tx.transition(
                id,
                from,
                *to,
                created,
                "seeded",
                aiops::store::Record::Nothing
            )
            .await
            .unwrap()
        );
        from = *to;
    }
    if let Some(t) = s.ttr_s {
        assert_eq!(
            tx.record_ttr(&alert.fingerprint, alert.starts_at_ms(), t * 1000)
                .await
                .unwrap(),
            1
        );
    }
    tx.commit().await.unwrap();
}

fn history() -> Vec<Seed> {
    let s = |alertname, playbook, namespace, end, ttr_s, dry_run, age_h| Seed {
        alertname,
        playbook,
        namespace,
        end,
        ttr_s,
        dry_run,
        age_h,
    };
    vec![
        s(
            "Down",
            "restart",
            "prod",
            JobState::Succeeded,
            Some(60),
            false,
            1,
        ),
        s(
            "Down",
            "restart",
            "prod",
            JobState::Succeeded,
            Some(120),
            false,
            2,
        ),
        s(
            "Down",
            "restart",
            "prod",
            JobState::Succeeded,
            Some(300),
            false,
            3,
        ),
        s(
            "Down",
            "restart",
            "prod",
            JobState::Escalated,
            None,
            false,
            4,
        ),
        s(
            "Down",
            "rollback",
            "prod",
            JobState::Escalated,
            None,
            false,
            5,
        ),
        s(
            "OOM",
            "oom_handler",
            "dev",
            JobState::Succeeded,
            Some(30),
            false,
            6,
        ),
        s(
            "OOM",
            "oom_handler",
            "dev",
            JobState::Succeeded,
            Some(90),
            false,
            7,
        ),
        // Not counted: a dry run, and a repair before the window.
        s(
            "Down",
            "restart",
            "prod",
            JobState::Succeeded,
            Some(1),
            true,
            1,
        ),
        s(
            "Down",
            "restart",
            "prod",
            JobState::Escalated,
            None,
            false,
            24 * 30,
        ),
    ]
}

async fn stats_from_a_seeded_history_equal_the_hand_computed_values(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::new(db, dir.path()).await;
    let store = Store::connect(&test_db.url, &aiops::store::Options::default())
        .await
        .unwrap();
    for (n, s) in history().iter().enumerate() {
        seed(&store, n as i64, s).await;
    }
    let since = aiops::store::now_ms() - 7 * 24 * 3_600_000;
    let stats = aiops::kb::stats(&store, since, None).await.unwrap();
    let by: HashMap<(String, String), aiops::kb::Stat> = stats
        .into_iter()
        .map(|s| ((s.alertname.clone(), s.playbook.clone()), s))
        .collect();
    let restart = &by[&("Down".to_string(), "restart".to_string())];
    // 4 finished in the window (the dry run and the 30-day-old one excluded), 3 succeeded;
    // TTRs 60, 120, 300 s: mean 160 s; p90 by nearest rank = the 3rd of 3 = 300 s.
    assert_eq!((restart.runs, restart.succeeded), (4, 3));
    assert_eq!(restart.success_rate, 0.75);
    assert_eq!(restart.ttr_mean_s, Some(160.0));
    assert_eq!(restart.ttr_p90_s, Some(300.0));
    let rollback = &by[&("Down".to_string(), "rollback".to_string())];
    assert_eq!(
        (rollback.runs, rollback.succeeded, rollback.ttr_mean_s),
        (1, 0, None)
    );
    let oom = &by[&("OOM".to_string(), "oom_handler".to_string())];
    // TTRs 30, 90: mean 60; p90 rank ceil(1.8) = 2 → 90 s.
    assert_eq!(
        (oom.success_rate, oom.ttr_mean_s, oom.ttr_p90_s),
        (1.0, Some(60.0), Some(90.0))
    );
    assert_eq!(by.len(), 3);

    // An app (namespace) sees only its own.
    let dev = aiops::kb::stats(&store, since, Some(&["dev".to_string()]))
        .await
        .unwrap();
    assert_eq!(
        dev.iter().map(|s| s.alertname.as_str()).collect::<Vec<_>>(),
        ["OOM"]
    );

    let targets = aiops::kb::target_stats(&store, since, None).await.unwrap();
    assert_eq!(targets.len(), 7, "{targets:#?}");
    assert!(targets.iter().all(|t| t.runs == 1));
    // Longer windows add whole 30-day periods to the days before them; every window from 1 to
    // 120 days counts exactly the repairs created since its first day.
    for days in 1..=120 {
        let since = aiops::store::now_ms() - days * 24 * 3_600_000;
        let day_start = since.div_euclid(86_400_000) * 86_400_000;
        let want: i64 = history()
            .iter()
            .filter(|s| !s.dry_run && aiops::store::now_ms() - s.age_h * 3_600_000 >= day_start)
            .count() as i64;
        let got: i64 = aiops::kb::target_stats(&store, since, None)
            .await
            .unwrap()
            .iter()
            .map(|t| t.runs)
            .sum();
        assert_eq!(got, want, "window of {days} days");
        let all: i64 = aiops::kb::stats(&store, since, None)
            .await
            .unwrap()
            .iter()
            .map(|s| s.runs)
            .sum();
        assert_eq!(all, want, "window of {days} days");
    }

    // Similar incidents: same alertname and namespace, successes first, newest first.
    let similar = aiops::kb::similar(&store, "Down", "prod", 10)
        .await
        .unwrap();
    let states: Vec<_> = similar.iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        [
            JobState::Succeeded,
            JobState::Succeeded,
            JobState::Succeeded,
            JobState::Escalated,
            JobState::Escalated,
            JobState::Escalated
        ]
    );
    assert_eq!(
        similar[0].ttr_ms,
        Some(60_000),
        "the newest success first (1 h old, 60 s to recover)"
    );
}
both_backends!(stats_from_a_seeded_history_equal_the_hand_computed_values);

/// More expired rollup and activity rows than one pruning batch holds (2,000): retention
/// deletes them batch after batch until none is left, counts each row once, and keeps the
/// rows still inside their windows.
async fn retention_empties_rollups_and_activity_longer_than_one_batch(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::new(db, dir.path()).await;
    let store = Store::connect(&test_db.url, &aiops::store::Options::default())
        .await
        .unwrap();
    let day = aiops::store::DAY_MS;
    let now = aiops::store::now_ms();
    let (old_day, new_day) = ((now - 800 * day) / day, now / day);
    let raw = common::raw_db(&test_db.url).await;
    // 4,500 expired rows per table, then one fresh row each.
    let rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4500)";
    for sql in [
        format!(
            "{rows} INSERT INTO kb_daily (namespace, day, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms) \
             SELECT 'app', $1, 'a' || i, 'p', 1, 1, 0, 0 FROM n"
        ),
        format!(
            "{rows} INSERT INTO kb_daily_all (day, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms) \
             SELECT $1, 'a' || i, 'p', 1, 1, 0, 0 FROM n"
        ),
        format!(
            "{rows} INSERT INTO kb_target_daily (day, namespace, target_key, runs, succeeded) \
             SELECT $1, 'app', 't' || i, 1, 1 FROM n"
        ),
        format!(
            "{rows} INSERT INTO kb_target_period (period, namespace, target_key, runs, succeeded) \
             SELECT $1 / 30, 'app', 't' || i, 1, 1 FROM n"
        ),
        format!(
            "{rows} INSERT INTO target_activity (target_key, last_seen) SELECT 't' || i, $1 * {day} FROM n"
        ),
    ] {
        for at in [old_day, new_day] {
            let sql = if at == new_day {
                // One row, under keys of its own (target_activity is keyed by target only).
                sql.replace("i < 4500", "i < 1")
                    .replace("'t' ||", "'fresh' ||")
            } else {
                sql.clone()
            };
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(at)
                .execute(&raw)
                .await
                .unwrap();
        }
    }
    let pruned = store.prune(&common::cutoffs(now, 180)).await.unwrap();
    assert_eq!((pruned.stats, pruned.activity), (4500, 4500), "{pruned:?}");
    for table in [
        "kb_daily",
        "kb_daily_all",
        "kb_target_daily",
        "kb_target_period",
        "target_activity",
    ] {
        let n = common::count_rows(&raw, table).await;
        assert_eq!(n, 1, "only the fresh row of {table} is left");
    }
    raw.close().await;
    store.close().await;
}
both_backends!(retention_empties_rollups_and_activity_longer_than_one_batch);

/// A firing Down alert on prod/web that the shipped `restart` rule repairs.
fn down_in_prod(starts_at: &str) -> String {
    payload(
        &[(
            &[
                ("alertname", "Down"),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "web"),
                ("severity", "critical"),
            ],
            "firing",
        )],
        starts_at,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_after_a_repair_records_its_time_to_recover_for_the_cli() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let starts = chrono::Utc::now() - chrono::Duration::minutes(10);
    let fire = down_in_prod(&starts.to_rfc3339());
    app.post_webhook(fire.clone()).await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let ends = starts + chrono::Duration::minutes(4);
    let resolved = fire
        .replace("\"firing\"", "\"resolved\"")
        .replace("0001-01-01T00:00:00Z", &ends.to_rfc3339());
    app.post_webhook(resolved).await;
    let jobs = app.store().await.jobs().await.unwrap();
    assert_eq!(jobs[0].ttr_ms, Some(240_000), "{jobs:#?}");

    let env = HashMap::from([("AIOPS_DATABASE_URL", app.db.url.clone())]);
    let (status, out, err) = run_cli(app.dir.path(), &["kb", "stats", "--since", "1d"], &env);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.lines().any(|l| l.starts_with("Down")
            && l.contains("restart")
            && l.contains("100%")
            && l.contains("240s")),
        "{out}"
    );
    let (status, out, _) = run_cli(app.dir.path(), &["kb", "history", "prod/web"], &env);
    assert!(status.success());
    assert!(
        out.contains("restart [restart] succeeded") && out.contains("(recovered in 240s)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choose_best_picks_the_alternative_that_worked_for_this_alert() {
    // A health endpoint that always fails, so every repair here fails verification.
    let health = StandIn::answering(500).await;
    let url = format!("{}/healthz", health.url);
    let rules = format!(
        "rules:\n  - name: r\n    matchers: ['app=\"api\"']\n    playbook: restart\n    verify: {{health_url: \"{url}\"}}\n    escalate:\n      - choose: best\n        from:\n          - playbook: restart\n          - playbook: rollback\n"
    );
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).rules(&rules)).await;
    // History: for "Trouble", restart never worked and rollback did.
    let store = app.store().await;
    let s = |playbook, end| Seed {
        alertname: "Trouble",
        playbook,
        namespace: "prod",
        end,
        ttr_s: None,
        dry_run: false,
        age_h: 2,
    };
    seed(&store, 100, &s("restart", JobState::Escalated)).await;
    seed(&store, 101, &s("rollback", JobState::Succeeded)).await;

    let fire = payload(
        &[(
            &[
                ("alertname", "Trouble"),
                ("namespace", "prod"),
                ("app", "api"),
            ],
            "firing",
        )],
        "2026-11-26T04:00:00Z",
    );
    app.post_webhook(fire).await;
    let jobs = app
        .wait_for_jobs("the chain to end", |j| {
            j.len() == 4 && j[3].state.is_terminal() && j[3].state != JobState::Failed
        })
        .await;
    assert_eq!(jobs[2].playbook, "restart");
    assert_eq!(
        jobs[3].playbook, "rollback",
        "the knowledge base chose rollback over the listed-first restart"
    );
    let esc = store.escalations().await.unwrap();
    let chose = esc.iter().find(|e| e.kind == "playbook").unwrap();
    assert!(
        chose
            .reason
            .contains("chose rollback by success rate for Trouble (restart 0%, rollback 100%)"),
        "{}",
        chose.reason
    );
}

async fn the_cli_json_and_the_api_use_the_same_keys(db: Db) {
    const SECRET: &str = "kb-test-secret-0123456789abcdef0123";
    let app = TestApp::spawn_app(Spawn::new(db).env("AIOPS_JWT_SECRET", SECRET)).await;
    let fire = down_in_prod(&chrono::Utc::now().to_rfc3339());
    app.post_webhook(fire).await;
    app.wait_all_jobs_in(&[JobState::Succeeded]).await;
    let admin = common::api::issue(&app, SECRET, "root", "", "admin");
    let env = HashMap::from([("AIOPS_DATABASE_URL", app.db.url.clone())]);
    let cli = |args: &[&str]| -> serde_json::Value {
        let (status, out, err) = run_cli(app.dir.path(), args, &env);
        assert!(status.success(), "{args:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };

    let stats = cli(&["kb", "stats", "--since", "1d", "--json"]);
    let (s, api_stats) = app.api_get(&admin, "/api/kb/stats?since=1d").await;
    assert_eq!(s, 200, "{api_stats}");
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&stats), ["by_alert", "by_target", "since"]);
    assert_eq!(keys(&stats), keys(&api_stats));
    assert_eq!(stats["by_alert"], api_stats["by_alert"]);
    assert_eq!(stats["by_target"], api_stats["by_target"]);
    assert_eq!(stats["by_alert"][0]["runs"], 1, "{stats}");

    let history = cli(&["kb", "history", "prod/web", "--json"]);
    let (s, repairs) = app
        .api_get(&admin, "/api/repairs?target=prod/Deployment/web")
        .await;
    assert_eq!(s, 200, "{repairs}");
    assert_eq!(history["target"], "prod/Deployment/web");
    assert_eq!(
        history["repairs"], repairs["items"],
        "one repair, the same keys and values"
    );
    assert_eq!(history["repairs"].as_array().map(Vec::len), Some(1));
}
both_backends!(the_cli_json_and_the_api_use_the_same_keys);
