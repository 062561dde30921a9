//! GitOps holds: the store's rules for them (both backends), the release task of `aiops serve`
//! (expiry, two daemons on one store, a restart) and `/api/gitops/holds` (per-app access,
//! release by hand, audit). Holds are seeded through the store API, as a playbook run under
//! `gitops: hold` records them; the daemons act on the in-memory cluster.

use crate::both_backends;
use crate::common;

use aiops::auth::Role;
use aiops::gitops::{Controller, Field, FieldChange, GitChange, HoldMechanism, HoldPlacement};
use aiops::rules::{ChangeKind, Target};
use aiops::store::{NewHold, Store, now_ms};
use common::api::token;
use common::stand_ins::StandIn;
use common::wait::{DEFAULT_WITHIN, until};
use common::{Db, Spawn, TestApp, TestDb};
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

fn target(namespace: &str, name: &str) -> Target {
    Target {
        namespace: namespace.into(),
        kind: "Deployment".into(),
        name: name.into(),
    }
}

/// A Flux Kustomization's hold on `namespace/Deployment/name` (the annotation on the object).
fn new_hold(namespace: &str, name: &str, expires_at: i64) -> NewHold {
    let owner = Controller::FluxKustomization {
        name: "apps".into(),
        namespace: "flux-system".into(),
    };
    NewHold {
        job_id: 1,
        target: target(namespace, name),
        controller: owner.clone(),
        placement: HoldPlacement {
            mechanism: HoldMechanism::FluxObjectAnnotation,
            saved: None,
        },
        change: GitChange {
            kind: ChangeKind::Memory,
            target: target(namespace, name),
            changes: vec![FieldChange {
                field: Field::MemoryLimit {
                    container: "app".into(),
                },
                value: "615Mi".into(),
            }],
            owner,
            revision: None,
        },
        created_at: now_ms(),
        expires_at,
    }
}

async fn store_of(db: &TestDb) -> Store {
    Store::connect(&db.url, &aiops::store::Options::default())
        .await
        .unwrap()
}

async fn fresh_store(db: Db) -> (tempfile::TempDir, TestDb, Store) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::new(db, dir.path()).await;
    let store = store_of(&test_db).await;
    (dir, test_db, store)
}

// ---- the store -------------------------------------------------------------------------------

async fn one_object_has_at_most_one_open_hold_and_extending_it_never_shortens_it(db: Db) {
    let (_dir, _db, store) = fresh_store(db).await;
    let t0 = now_ms();
    let id = store
        .record_hold(&new_hold("prod", "web", t0 + 60_000))
        .await
        .unwrap();
    assert!(
        store
            .record_hold(&new_hold("prod", "web", t0 + 90_000))
            .await
            .is_err(),
        "a second open hold on one object must be refused: extend the first"
    );
    // Another object is held on its own.
    store
        .record_hold(&new_hold("prod", "api", t0 + 60_000))
        .await
        .unwrap();
    let mut change = new_hold("prod", "web", 0).change;
    change.changes[0].value = "800Mi".into();
    assert!(store.extend_hold(id, t0 + 30_000, &change).await.unwrap());
    let held = store
        .open_hold(&target("prod", "web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.id, id);
    assert_eq!(held.hold.expires_at, t0 + 60_000, "never shortened");
    assert_eq!(
        held.hold.change, change,
        "the newer repair's change is what Git needs"
    );
    assert!(store.extend_hold(id, t0 + 120_000, &change).await.unwrap());
    assert_eq!(
        store.hold(id).await.unwrap().unwrap().hold.expires_at,
        t0 + 120_000
    );
    // Released, it is no longer open: it cannot be extended, and a new hold may be recorded.
    assert!(store.claim_hold_release(id, "git", t0).await.unwrap());
    assert!(!store.extend_hold(id, t0 + 999_000, &change).await.unwrap());
    assert!(
        store
            .open_hold(&target("prod", "web"))
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .record_hold(&new_hold("prod", "web", t0 + 60_000))
        .await
        .unwrap();
    assert_ne!(again, id);
    let open: Vec<i64> = store
        .holds(false, 10)
        .await
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    let all: Vec<i64> = store
        .holds(true, 10)
        .await
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(open.len(), 2, "{open:?}");
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0], again, "newest first");
}
both_backends!(one_object_has_at_most_one_open_hold_and_extending_it_never_shortens_it);

async fn of_two_callers_claiming_one_hold_for_release_exactly_one_moves_it(db: Db) {
    let (_dir, test_db, one) = fresh_store(db).await;
    let two = store_of(&test_db).await;
    let id = one
        .record_hold(&new_hold("prod", "web", now_ms()))
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        one.claim_hold_release(id, "api:a", 10),
        two.claim_hold_release(id, "git", 20)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one caller moves the hold: {a} {b}");
    let hold = one.hold(id).await.unwrap().unwrap();
    let (by, at) = if a { ("api:a", 10) } else { ("git", 20) };
    assert_eq!(hold.released_by.as_deref(), Some(by));
    assert_eq!(hold.released_at, Some(at));
    assert!(!one.claim_hold_release(id, "api:x", 30).await.unwrap());
    assert!(one.open_holds().await.unwrap().is_empty());
}
both_backends!(of_two_callers_claiming_one_hold_for_release_exactly_one_moves_it);

async fn an_app_scoped_listing_gets_its_own_holds_however_many_other_apps_have(db: Db) {
    let (_dir, _db, store) = fresh_store(db).await;
    let t = now_ms() + 60_000;
    let mine = store
        .record_hold(&new_hold("shop", "web", t))
        .await
        .unwrap();
    for i in 0..3 {
        store
            .record_hold(&new_hold("other", &format!("w{i}"), t))
            .await
            .unwrap();
    }
    let shop = ["shop".to_string()];
    let ids = |hs: Vec<aiops::store::Hold>| hs.iter().map(|h| h.id).collect::<Vec<_>>();
    // The three newer holds of another app do not use up a page of two.
    assert_eq!(
        ids(store.holds_in(false, Some(&shop), 2).await.unwrap()),
        vec![mine]
    );
    assert!(
        store
            .holds_in(true, Some(&[]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.holds_in(false, None, 2).await.unwrap().len(), 2);
}
both_backends!(an_app_scoped_listing_gets_its_own_holds_however_many_other_apps_have);

async fn failed_release_attempts_are_counted_while_the_hold_is_open(db: Db) {
    let (_dir, _db, store) = fresh_store(db).await;
    let id = store
        .record_hold(&new_hold("prod", "web", now_ms()))
        .await
        .unwrap();
    assert_eq!(
        store.hold_release_failed(id, "forbidden").await.unwrap(),
        Some(1)
    );
    assert_eq!(
        store.hold_release_failed(id, "timeout").await.unwrap(),
        Some(2)
    );
    let hold = store.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.release_attempts, 2);
    assert_eq!(hold.release_error.as_deref(), Some("timeout"));
    assert!(store.claim_hold_release(id, "git", now_ms()).await.unwrap());
    let hold = store.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.release_error, None, "a release clears the last error");
    assert_eq!(store.hold_release_failed(id, "late").await.unwrap(), None);
    assert_eq!(store.hold(id).await.unwrap().unwrap().release_attempts, 2);
}
both_backends!(failed_release_attempts_are_counted_while_the_hold_is_open);

async fn an_expiry_claim_rechecks_the_expiry_so_a_hold_a_job_just_extended_stays_open(db: Db) {
    let (_dir, test_db, pass) = fresh_store(db).await;
    let job = store_of(&test_db).await;
    let id = pass
        .record_hold(&new_hold("prod", "web", 1_000))
        .await
        .unwrap();
    // The pass read the hold as expired at 2 000; a job extends it before the pass claims it.
    let change = new_hold("prod", "web", 0).change;
    assert!(job.extend_hold(id, 60_000, &change).await.unwrap());
    assert!(!pass.claim_hold_release(id, "expiry", 2_000).await.unwrap());
    assert!(pass.hold(id).await.unwrap().unwrap().released_at.is_none());
    // Releases not by expiry do not depend on it; a claimed hold is never claimed again.
    assert!(pass.claim_hold_release(id, "git", 2_000).await.unwrap());
    assert!(!job.claim_hold_release(id, "expiry", 90_000).await.unwrap());
}
both_backends!(an_expiry_claim_rechecks_the_expiry_so_a_hold_a_job_just_extended_stays_open);

async fn an_undone_claim_reopens_the_hold_unless_a_newer_hold_on_the_object_is_open(db: Db) {
    let (_dir, test_db, one) = fresh_store(db).await;
    let two = store_of(&test_db).await;
    let id = one
        .record_hold(&new_hold("prod", "web", 1_000))
        .await
        .unwrap();
    // The cluster release failed: the claim is undone and the hold retried.
    assert!(one.claim_hold_release(id, "expiry", 2_000).await.unwrap());
    let mut tx = one.begin_write().await.unwrap();
    assert_eq!(
        tx.unclaim_hold_release(id, "forbidden").await.unwrap(),
        (1, true)
    );
    tx.commit().await.unwrap();
    let hold = one.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.released_at, None);
    assert_eq!(hold.released_by, None);
    assert_eq!(hold.release_error.as_deref(), Some("forbidden"));
    // Claimed again, and a newer hold is placed on the object before the release fails.
    assert!(one.claim_hold_release(id, "expiry", 3_000).await.unwrap());
    let newer = two
        .record_hold(&new_hold("prod", "web", 90_000))
        .await
        .unwrap();
    let mut tx = one.begin_write().await.unwrap();
    assert_eq!(
        tx.unclaim_hold_release(id, "timeout").await.unwrap(),
        (2, false)
    );
    tx.commit().await.unwrap();
    let hold = one.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.released_at, Some(3_000));
    assert_eq!(hold.release_error.as_deref(), Some("timeout"));
    let open: Vec<_> = one
        .open_holds()
        .await
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(open, [newer]);
}
both_backends!(an_undone_claim_reopens_the_hold_unless_a_newer_hold_on_the_object_is_open);

// ---- the daemon ------------------------------------------------------------------------------

/// Settings: holds looked at every 100 ms, every message to a webhook stand-in.
fn config(hook: &StandIn) -> String {
    format!(
        "gitops:\n  release_interval: 100ms\nnotify:\n  channels:\n    ops: {{type: webhook, url: \"{}/hook\"}}\n  routes:\n    - channels: [ops]\n",
        hook.url
    )
}

fn settings(db: Db, hook: &StandIn) -> Spawn {
    Spawn::new(db)
        .config(&config(hook))
        .env("AIOPS_JWT_SECRET", SECRET)
}

async fn daemon(db: Db, hook: &StandIn) -> TestApp {
    TestApp::spawn(settings(db, hook)).await
}

/// Another daemon (a replica, or the one restarted) over `app`'s directory and store.
async fn beside(app: &TestApp, db: Db, hook: &StandIn) -> TestApp {
    TestApp::spawn_in(app.dir.clone(), app.db.clone(), settings(db, hook)).await
}

/// The `gitops_hold_released` rows of the outbox.
async fn released_messages(store: &Store) -> Vec<Value> {
    store
        .notifications()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.event == "gitops_hold_released")
        .map(|n| serde_json::from_str(&n.event_json).unwrap())
        .collect()
}

async fn wait_released(app: &TestApp, store: &Store, id: i64) -> aiops::store::Hold {
    until(
        "the hold to be released",
        DEFAULT_WITHIN,
        // The claim is committed before the cluster release and the announcement: wait for both.
        async || {
            let announced = released_messages(store)
                .await
                .iter()
                .any(|m| m["gitops"]["hold_id"] == id);
            store
                .hold(id)
                .await
                .unwrap()
                .filter(|h| announced && h.released_at.is_some())
        },
        || app.log_text(),
    )
    .await
}

async fn two_daemons_on_one_store_release_expired_holds_and_announce_each_once(db: Db) {
    let hook = StandIn::start().await;
    let one = daemon(db, &hook).await;
    let two = beside(&one, db, &hook).await;
    let store = one.store().await;
    let soon = now_ms() + 300;
    let mut ids = Vec::new();
    for name in ["web", "api", "demo"] {
        ids.push(
            store
                .record_hold(&new_hold("prod", name, soon))
                .await
                .unwrap(),
        );
    }
    for &id in &ids {
        let hold = wait_released(&one, &store, id).await;
        assert_eq!(hold.released_by.as_deref(), Some("expiry"));
    }
    // One more, recorded after those were released: once it is released too, the passes that
    // raced over the first three are over.
    let last = store
        .record_hold(&new_hold("prod", "other", now_ms()))
        .await
        .unwrap();
    wait_released(&two, &store, last).await;
    ids.push(last);
    let messages = released_messages(&store).await;
    let mut announced: Vec<i64> = messages
        .iter()
        .map(|m| m["gitops"]["hold_id"].as_i64().unwrap())
        .collect();
    announced.sort_unstable();
    assert_eq!(announced, ids, "each hold announced once: {messages:#?}");
    let web = messages
        .iter()
        .find(|m| m["gitops"]["hold_id"] == ids[0])
        .unwrap();
    assert_eq!(web["gitops"]["released_by"], "expiry");
    assert_eq!(
        web["gitops"]["owner"],
        "Flux Kustomization flux-system/apps"
    );
    assert_eq!(web["target"], "prod/Deployment/web");
    assert_eq!(web["namespace"], "prod");
}
both_backends!(two_daemons_on_one_store_release_expired_holds_and_announce_each_once);

async fn a_restarted_daemon_releases_a_hold_recorded_before_its_restart(db: Db) {
    let hook = StandIn::start().await;
    let mut app = daemon(db, &hook).await;
    let store = app.store().await;
    assert!(app.stop().success());
    // Recorded while no daemon runs (as by a replica that died after placing it).
    let id = store
        .record_hold(&new_hold("prod", "web", now_ms() - 1))
        .await
        .unwrap();
    let app = beside(&app, db, &hook).await;
    let hold = wait_released(&app, &store, id).await;
    assert_eq!(hold.released_by.as_deref(), Some("expiry"));
    assert_eq!(released_messages(&store).await.len(), 1);
}
both_backends!(a_restarted_daemon_releases_a_hold_recorded_before_its_restart);

async fn the_api_lists_and_releases_holds_per_app_and_audits_the_release(db: Db) {
    let hook = StandIn::start().await;
    let app = daemon(db, &hook).await;
    let store = app.store().await;
    let later = now_ms() + 3_600_000;
    let prod = store
        .record_hold(&new_hold("prod", "web", later))
        .await
        .unwrap();
    let other = store
        .record_hold(&new_hold("staging", "web", later))
        .await
        .unwrap();
    let admin = token(SECRET, Role::Admin, &[]);
    let editor = token(SECRET, Role::Editor, &["prod"]);
    let viewer = token(SECRET, Role::Viewer, &["prod"]);

    let (s, body) = app.api_get(&admin, "/api/gitops/holds").await;
    assert_eq!(s, 200, "{body}");
    let ids: Vec<&Value> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["id"])
        .collect();
    assert_eq!(ids, [&json!(other), &json!(prod)], "newest first");
    // A token limited to prod sees prod's hold only; staging's answers 404 as a missing one.
    let (s, body) = app.api_get(&editor, "/api/gitops/holds").await;
    assert_eq!(s, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    let item = &items[0];
    assert_eq!(item["id"], prod);
    assert_eq!(item["target"], "prod/Deployment/web");
    assert_eq!(item["controller"], "flux_kustomization");
    assert_eq!(item["mechanism"], "flux_object_annotation");
    assert_eq!(
        item["change"],
        "set resources.limits.memory of container app to 615Mi"
    );
    assert_eq!(item["open"], true);
    let (s, _) = app
        .api_get(&editor, &format!("/api/gitops/holds/{other}"))
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .api_post(
            &editor,
            &format!("/api/gitops/holds/{other}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, body) = app
        .api_get(&viewer, &format!("/api/gitops/holds/{prod}"))
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = app
        .api_post(
            &viewer,
            &format!("/api/gitops/holds/{prod}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, 403);

    let path = format!("/api/gitops/holds/{prod}/release");
    let (s, body) = app.api_post(&editor, &path, json!({})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["open"], false);
    assert_eq!(body["released_by"], "api:editor-user");
    let (s, body) = app.api_post(&editor, &path, json!({})).await;
    assert_eq!(s, 409, "{body}");
    let messages = released_messages(&store).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["gitops"]["released_by"], "api:editor-user");
    // Released holds are listed with ?all=true only.
    let (_, body) = app.api_get(&editor, "/api/gitops/holds").await;
    assert_eq!(body["items"], json!([]));
    let (_, body) = app.api_get(&editor, "/api/gitops/holds?all=true").await;
    assert_eq!(body["items"][0]["id"], prod);
    let (s, _) = app.api_get(&editor, "/api/gitops/holds?all=maybe").await;
    assert_eq!(s, 400);
    // A misspelt parameter is refused rather than silently ignored.
    let (s, body) = app.api_get(&editor, "/api/gitops/holds?al=true").await;
    assert_eq!(s, 400, "{body}");
    // Every release attempt is audited with its subject and outcome.
    let audit = store.audit_log(50).await.unwrap();
    let statuses: Vec<(String, i64)> = audit
        .iter()
        .filter(|e| e.action == "POST /api/gitops/holds/{id}/release")
        .map(|e| (e.subject.clone(), e.status))
        .collect();
    for expected in [
        ("editor-user".to_string(), 404),
        ("viewer-user".to_string(), 403),
        ("editor-user".to_string(), 200),
        ("editor-user".to_string(), 409),
    ] {
        assert!(statuses.contains(&expected), "{statuses:?}");
    }
}
both_backends!(the_api_lists_and_releases_holds_per_app_and_audits_the_release);
