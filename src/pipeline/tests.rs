//! Unit tests of the pipeline: dedup, guards and the storm brake on a real store.

use super::*;
use crate::playbook::Catalog;
use crate::rules::RuleSet;
use crate::store::JobState;

async fn pipeline(rules_yaml: &str, settings: Settings) -> Pipeline {
    let store = Store::connect("sqlite::memory:", &store::Options::default())
        .await
        .unwrap();
    let rules = RuleSet::parse_str(rules_yaml, std::path::Path::new("test.yaml")).unwrap();
    let defs = Definitions {
        rules: Arc::new(RuleSet::from_rules(rules)),
        playbooks: Catalog::default(),
    };
    Pipeline::new(store, defs, &settings, Metrics::new())
}

fn alert_json(app: &str, status: &str, starts: &str) -> String {
    format!(
        r#"{{"status":"{status}","labels":{{"alertname":"Down","auto_repair":"restart","namespace":"prod","app":"{app}"}},"startsAt":"{starts}"}}"#
    )
}

fn payload(alerts: &[String]) -> Payload {
    Payload::from_slice(
        format!(
            r#"{{"version":"4","status":"firing","alerts":[{}]}}"#,
            alerts.join(",")
        )
        .as_bytes(),
    )
    .unwrap()
}

const RESTART: &str =
    "rules:\n  - name: restart\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n";

#[tokio::test]
async fn each_alert_is_decided_on_its_own_status_not_the_groups() {
    let p = pipeline(RESTART, Settings::default()).await;
    let first = p
        .ingest(&payload(&[alert_json(
            "web",
            "firing",
            "2026-01-01T00:00:00Z",
        )]))
        .await
        .unwrap();
    assert_eq!(first.jobs.len(), 1);
    // Group status says firing; the alert inside is resolved and must cancel, not act.
    let waiting = p.store().jobs().await.unwrap();
    assert_eq!(waiting[0].state, JobState::Queued);
    let report = p
        .ingest(&payload(&[alert_json(
            "web",
            "resolved",
            "2026-01-01T00:00:00Z",
        )]))
        .await
        .unwrap();
    assert!(report.jobs.is_empty());
    assert_eq!(report.alerts[0].cancelled_jobs, first.jobs);
    assert_eq!(
        p.store().jobs().await.unwrap()[0].state,
        JobState::Cancelled
    );
}

#[tokio::test]
async fn continue_lets_a_later_rule_act_on_the_same_alert() {
    let rules = r#"
rules:
  - name: first
    matchers: ['auto_repair="restart"']
    playbook: restart
    continue: true
  - name: second
    matchers: ['alertname="Down"']
    playbook: cleanup
    target: {namespace: $namespace, kind: StatefulSet, name: $app}
  - name: never
    matchers: ['alertname="Down"']
    playbook: restart
"#;
    let p = pipeline(rules, Settings::default()).await;
    let report = p
        .ingest(&payload(&[alert_json(
            "web",
            "firing",
            "2026-01-01T00:00:00Z",
        )]))
        .await
        .unwrap();
    let names: Vec<_> = p
        .store()
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.rule, j.target_key))
        .collect();
    assert_eq!(
        names,
        [
            ("first".to_string(), "prod/Deployment/web".to_string()),
            ("second".to_string(), "prod/StatefulSet/web".to_string())
        ]
    );
    assert_eq!(report.jobs.len(), 2);
}

#[tokio::test]
async fn the_storm_brake_releases_once_the_window_has_calmed() {
    let mut settings = Settings::default();
    settings.guard.storm.max_targets = 2;
    let p = pipeline(RESTART, settings).await;
    let storm: Vec<String> = (0..4)
        .map(|i| alert_json(&format!("a{i}"), "firing", "2026-01-01T00:00:00Z"))
        .collect();
    let report = p.ingest(&payload(&storm)).await.unwrap();
    assert_eq!((report.jobs.len(), report.refused), (2, 2));
    // Arrange: everything so far happened long before the window.
    p.store().set_target_activity(0).await.unwrap();
    let report = p
        .ingest(&payload(&[alert_json(
            "calm",
            "firing",
            "2026-01-01T00:00:00Z",
        )]))
        .await
        .unwrap();
    assert_eq!(report.jobs.len(), 1, "repairs resume: {:?}", report.alerts);
    let brakes = p.store().storm_brakes().await.unwrap();
    assert!(!brakes.is_empty(), "the brake engaged");
    assert!(
        brakes.iter().all(|b| b.released_at.is_some()),
        "the episode is closed: {brakes:?}"
    );
}

#[tokio::test]
async fn simulate_decides_like_ingest_but_records_nothing() {
    let p = pipeline(RESTART, Settings::default()).await;
    let body = payload(&[alert_json("web", "firing", "2026-01-01T00:00:00Z")]);
    let sim = p.simulate(&body, Simulation::default()).await.unwrap();
    assert!(matches!(sim.alerts[0].rules[0], RuleVerdict::Job { .. }));
    assert_eq!(p.store().count_alert_events().await.unwrap(), 0);
    // And the real ingest afterwards is not a duplicate of the simulation.
    assert_eq!(p.ingest(&body).await.unwrap().accepted, 1);
}

#[tokio::test]
async fn a_duplicate_in_the_same_payload_is_recorded_once() {
    let p = pipeline(RESTART, Settings::default()).await;
    let a = alert_json("web", "firing", "2026-01-01T00:00:00Z");
    let report = p.ingest(&payload(&[a.clone(), a])).await.unwrap();
    assert_eq!(
        (report.accepted, report.duplicates, report.jobs.len()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn the_storm_count_kept_per_payload_decides_as_counting_the_window_for_each_alert() {
    let mut settings = Settings::default();
    settings.guard.storm.max_targets = 3;
    let p = pipeline(RESTART, settings).await;
    // Explicit fingerprints fix the order alerts are decided in (fingerprint order).
    let with_fp = |fp: &str, app: &str| {
        alert_json(app, "firing", "2026-01-01T00:00:00Z").replacen(
            '{',
            &format!(r#"{{"fingerprint":"{fp}","#),
            1,
        )
    };
    // a0 is in the window before the payload: counted by the range scan, not twice.
    p.ingest(&payload(&[with_fp("00", "a0")])).await.unwrap();

    let report = p
        .ingest(&payload(&[
            with_fp("07", "a4"),
            with_fp("01", "a0"),
            with_fp("02", "a1"),
            with_fp("03", "a1"),
            with_fp("04", "a2"),
            with_fp("05", "a3"),
            with_fp("06", "a1"),
        ]))
        .await
        .unwrap();

    let verdicts: Vec<&str> = report
        .alerts
        .iter()
        .map(|a| match &a.rules[0] {
            RuleVerdict::Job { .. } => "job",
            RuleVerdict::Refused { reason, .. } => reason.as_str(),
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            "target_busy", // a0: 1 target, already being repaired
            "job",         // a1: 2
            "target_busy", // a1 again: still 2
            "job",         // a2: 3
            "storm_brake", // a3: 4 > 3
            "storm_brake", // a1: present, still 4
            "storm_brake", // a4: 5
        ]
    );
    let brakes = p.store().storm_brakes().await.unwrap();
    assert_eq!(brakes.len(), 1, "{brakes:?}");
    assert_eq!(brakes[0].targets, 4);
}

#[tokio::test]
async fn a_target_that_is_not_a_kubernetes_name_is_refused_before_the_namespace_guard() {
    let p = pipeline(RESTART, Settings::default()).await;
    let body = payload(
        &[alert_json("web", "firing", "2026-01-01T00:00:00Z").replace(
            r#""namespace":"prod""#,
            r#""namespace":"default/../kube-system""#,
        )],
    );
    let report = p.ingest(&body).await.unwrap();
    match &report.alerts[0].rules[0] {
        RuleVerdict::Refused {
            reason,
            target,
            detail,
            ..
        } => {
            assert_eq!(*reason, Refusal::InvalidTarget);
            assert!(target.is_none());
            assert!(detail.contains("DNS-1123 label"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let activity = p.store().count_target_activity().await.unwrap();
    assert_eq!(
        activity, 0,
        "an invalid target does not feed the storm brake"
    );
}

/// A pipeline whose outbox has one Telegram channel on a route that opts in to `no_action`.
async fn pipeline_telling_no_action() -> Pipeline {
    let mut notify: crate::notify::NotifySettings = serde_yaml::from_str(
        "channels:\n  tg: {type: telegram, bot_token: t, chat_id: 1}\nroutes:\n  - channels: [tg]\n    events: [no_action]\n",
    )
    .unwrap();
    notify.resolve(&|_| None).unwrap();
    let outbox = Arc::new(crate::notify::Outbox::new(&notify).unwrap());
    pipeline(RESTART, Settings::default())
        .await
        .with_outbox(outbox)
}

fn no_namespace(app: &str) -> String {
    format!(
        r#"{{"status":"firing","labels":{{"alertname":"Down","auto_repair":"restart","app":"{app}"}},"startsAt":"2026-01-01T00:00:00Z"}}"#
    )
}

#[tokio::test]
async fn refusals_of_one_reason_join_one_no_action_message_until_it_is_due() {
    let p = pipeline_telling_no_action().await;
    let first = p
        .ingest(&payload(&[no_namespace("a"), no_namespace("b")]))
        .await
        .unwrap();
    assert_eq!(first.refused, 2);
    p.ingest(&payload(&[no_namespace("c")])).await.unwrap();
    let rows = p.store().notifications().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(
        (row.event.as_str(), row.channel.as_str()),
        ("no_action", "tg")
    );
    assert!(
        row.next_attempt_at >= row.created_at + 30_000,
        "sent group_wait after it opened: {row:#?}"
    );
    let event: crate::notify::Event = serde_json::from_str(&row.event_json).unwrap();
    assert_eq!((event.alert_count, event.alerts.len()), (3, 3));
    assert_eq!(event.reason, "no_target");
    assert!(row.body.contains("and 2 other alerts"), "{}", row.body);
    assert!(
        row.body.contains(r#"{app="c", auto_repair="restart"}"#),
        "{}",
        row.body
    );
}

#[tokio::test]
async fn simulate_tells_nobody_of_a_refusal() {
    let p = pipeline_telling_no_action().await;
    let report = p
        .simulate(&payload(&[no_namespace("a")]), Simulation::default())
        .await
        .unwrap();
    assert_eq!(report.alerts[0].rules.len(), 1);
    assert!(p.store().notifications().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_shadow_rule_reads_the_storm_brake_but_never_feeds_or_engages_it() {
    let mut settings = Settings::default();
    settings.guard.storm.max_targets = 2;
    let rules = "rules:\n  - name: watch\n    mode: shadow\n    matchers: ['auto_repair=\"shadowed\"']\n    playbook: restart\n  - name: restart\n    matchers: ['auto_repair=\"restart\"']\n    playbook: restart\n";
    let p = pipeline(rules, settings).await;
    let shadowed = |app: &str| {
        alert_json(app, "firing", "2026-01-01T00:00:00Z").replace("restart", "shadowed")
    };
    // Four shadow decisions on four targets: no brake, and nothing counted for real repairs.
    let report = p
        .ingest(&payload(
            &(0..4)
                .map(|i| shadowed(&format!("s{i}")))
                .collect::<Vec<_>>(),
        ))
        .await
        .unwrap();
    assert_eq!(
        (report.jobs.len(), report.refused),
        (4, 0),
        "{:?}",
        report.alerts
    );
    // So real repairs on two more targets are still within the brake's two; a third is not.
    let real: Vec<String> = (0..3)
        .map(|i| alert_json(&format!("r{i}"), "firing", "2026-01-01T00:00:00Z"))
        .collect();
    let report = p.ingest(&payload(&real)).await.unwrap();
    assert_eq!(
        (report.jobs.len(), report.refused),
        (2, 1),
        "{:?}",
        report.alerts
    );
    assert_eq!(p.store().storm_brakes().await.unwrap().len(), 1);
    // With the brake on, a shadow rule is refused as a real one would be, opening no episode.
    let report = p.ingest(&payload(&[shadowed("late")])).await.unwrap();
    match &report.alerts[0].rules[0] {
        RuleVerdict::Refused { reason, mode, .. } => {
            assert_eq!((*reason, *mode), (Refusal::StormBrake, Mode::Shadow));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.store().storm_brakes().await.unwrap().len(), 1);
}

/// The verdict of each rule on each alert of a report, as (fingerprint, verdict or reason).
fn verdicts(report: &Report) -> Vec<(String, String)> {
    report
        .alerts
        .iter()
        .flat_map(|a| {
            a.rules.iter().map(|r| {
                let what = match r {
                    RuleVerdict::Job { .. } => "job".to_string(),
                    RuleVerdict::Refused { reason, .. } => reason.as_str().to_string(),
                };
                (a.fingerprint.clone(), what)
            })
        })
        .collect()
}

/// Webhooks for a storm over seven apps, each alert a new occurrence, some targets again.
fn storm_webhooks() -> Vec<Payload> {
    let apps = [
        "a0", "a1", "a0", "a2", "a3", "a1", "a4", "a0", "a5", "a2", "a3", "a6",
    ];
    apps.iter()
        .enumerate()
        .map(|(i, app)| {
            payload(&[alert_json(
                app,
                "firing",
                &format!("2026-01-01T00:00:{i:02}Z"),
            )])
        })
        .collect()
}

#[tokio::test]
async fn webhooks_arriving_together_share_one_commit_and_are_decided_as_one_at_a_time() {
    let mut settings = Settings::default();
    settings.guard.storm.max_targets = 4;
    // One by one: each webhook its own transaction.
    let alone = pipeline(RESTART, settings.clone()).await;
    let mut expected = Vec::new();
    for w in storm_webhooks() {
        expected.push(verdicts(&alone.ingest(&w).await.unwrap()));
    }
    assert_eq!(alone.metrics().intake_batch.get_sample_count(), 12);

    // Together: on this current-thread runtime every ingest is queued before the writer runs.
    let together = pipeline(RESTART, settings).await;
    let webhooks = storm_webhooks();
    let reports = futures_util::future::join_all(webhooks.iter().map(|w| together.ingest(w))).await;
    let got: Vec<_> = reports
        .iter()
        .map(|r| verdicts(r.as_ref().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        expected.iter().flatten().any(|(_, v)| v == "storm_brake")
            && expected.iter().flatten().any(|(_, v)| v == "job")
            && expected.iter().flatten().any(|(_, v)| v == "target_busy"),
        "the storm exercises the guards: {expected:?}"
    );
    let m = together.metrics();
    assert_eq!(m.intake_batch.get_sample_count(), 1, "one commit");
    assert_eq!(m.intake_batch.get_sample_sum(), 12.0);
    assert_eq!(together.store().count_alert_events().await.unwrap(), 12);
    assert_eq!(
        together.store().refusals().await.unwrap(),
        alone.store().refusals().await.unwrap(),
        "the same decisions are stored"
    );
    assert_eq!(together.store().storm_brakes().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_webhook_refused_for_a_full_queue_is_rolled_back_alone_and_its_batch_commits() {
    let mut settings = Settings::default();
    settings.jobs.queue_capacity = 1;
    let p = pipeline(RESTART, settings).await;
    let first = payload(&[alert_json("web", "firing", "2026-01-01T00:00:00Z")]);
    let second = payload(&[alert_json("api", "firing", "2026-01-01T00:00:01Z")]);
    let third = payload(&[alert_json("web", "firing", "2026-01-01T00:00:02Z")]);
    let (a, b, c) = tokio::join!(p.ingest(&first), p.ingest(&second), p.ingest(&third));
    assert_eq!(a.unwrap().jobs.len(), 1);
    assert!(matches!(b, Err(Error::QueueFull { capacity: 1 })), "{b:?}");
    // The third needs no queue room: its target is busy with the first's job.
    assert_eq!(verdicts(&c.unwrap())[0].1, "target_busy");
    assert_eq!(p.metrics().intake_batch.get_sample_count(), 1);
    assert_eq!(p.metrics().queue_full.get(), 1);
    assert_eq!(
        p.store().count_alert_events().await.unwrap(),
        2,
        "nothing of the refused webhook is recorded"
    );
    // Its re-send is not a duplicate: it is decided again (and still finds the queue full).
    assert!(matches!(
        p.ingest(&second).await,
        Err(Error::QueueFull { .. })
    ));
}

#[tokio::test]
async fn a_batch_the_store_cannot_record_answers_each_webhook_unavailable() {
    let p = pipeline(RESTART, Settings::default()).await;
    p.store().close().await;
    let webhooks = storm_webhooks();
    let reports =
        futures_util::future::join_all(webhooks.iter().take(3).map(|w| p.ingest(w))).await;
    for r in reports {
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    }
}

#[tokio::test]
async fn a_resolve_earlier_in_a_batch_makes_room_in_the_queue_for_a_later_webhook() {
    let mut settings = Settings::default();
    settings.jobs.queue_capacity = 1;
    let p = pipeline(RESTART, settings).await;
    let fire = payload(&[alert_json("web", "firing", "2026-01-01T00:00:00Z")]);
    let resolve = payload(&[alert_json("web", "resolved", "2026-01-01T00:00:00Z")]);
    let other = payload(&[alert_json("api", "firing", "2026-01-01T00:00:01Z")]);
    let (a, b, c) = tokio::join!(p.ingest(&fire), p.ingest(&resolve), p.ingest(&other));
    assert_eq!(a.unwrap().jobs.len(), 1);
    assert_eq!(b.unwrap().alerts[0].cancelled_jobs.len(), 1);
    let c = c.expect("the cancelled job freed the queue's one place");
    assert_eq!(c.jobs.len(), 1);
    assert_eq!(p.metrics().intake_batch.get_sample_count(), 1, "one batch");
}
