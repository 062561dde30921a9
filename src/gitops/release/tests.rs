//! One release pass at a time over an in-memory store and a cluster stand-in that says what
//! the test wants (Git agrees or not, the release fails or not) and counts the releases.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{ESCALATE_AFTER_ATTEMPTS, GIT_GRACE, Released, Releaser};
use crate::cluster::{
    Cluster, Error as ClusterError, Memory, Replicas, Result, Rollback, RolloutStatus, Scaled,
};
use crate::gitops::{
    Controller, Field, FieldChange, FieldState, GitChange, HoldMechanism, HoldPlacement, ObjectInfo,
};
use crate::notify::{NotifySettings, Outbox};
use crate::rules::{ChangeKind, Target};
use crate::store::{self, NewHold, Store};

/// A cluster that only answers the hold calls, as the test sets them.
#[derive(Default)]
struct Controllers {
    agrees: Mutex<Option<bool>>,
    /// The live value of every observed field (`None`: unset).
    live: Mutex<Option<String>>,
    /// Releases that fail before one succeeds.
    failing: AtomicUsize,
    released: AtomicUsize,
}

fn unused<T>() -> Result<T> {
    Err(ClusterError::Unconfigured)
}

#[async_trait]
impl Cluster for Controllers {
    async fn restart(&self, _: &Target, _: bool) -> Result<()> {
        unused()
    }
    async fn rollout_status(&self, _: &Target) -> Result<RolloutStatus> {
        unused()
    }
    async fn rollback(&self, _: &Target, _: bool) -> Result<Rollback> {
        unused()
    }
    async fn memory(&self, _: &Target, _: Option<&str>) -> Result<Memory> {
        unused()
    }
    async fn set_memory(&self, _: &Target, _: &str, _: Option<i64>, _: i64, _: bool) -> Result<()> {
        unused()
    }
    async fn last_terminations(&self, _: &Target) -> Result<Vec<String>> {
        unused()
    }
    async fn delete_failed_pods(&self, _: &str, _: Duration, _: bool) -> Result<u64> {
        unused()
    }
    async fn delete_finished_jobs(&self, _: &str, _: Duration, _: bool) -> Result<u64> {
        unused()
    }
    async fn replicas(&self, _: &Target) -> Result<Replicas> {
        unused()
    }
    async fn scale(&self, _: &Target, _: i64, _: bool) -> Result<Scaled> {
        unused()
    }
    async fn object_info(&self, _: &Target) -> Result<ObjectInfo> {
        unused()
    }
    async fn observe(&self, _: &Target, fields: &[Field]) -> Result<Vec<FieldState>> {
        let value = self.live.lock().unwrap().clone();
        Ok(fields
            .iter()
            .map(|field| FieldState {
                field: field.clone(),
                value: value.clone(),
                managers: vec!["aiops".into()],
            })
            .collect())
    }
    async fn hold(&self, _: &Target, _: &Controller, _: bool) -> Result<HoldPlacement> {
        unused()
    }
    async fn release(&self, _: &Target, _: &Controller, _: &HoldPlacement) -> Result<()> {
        let failing = self.failing.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing.store(failing - 1, Ordering::SeqCst);
            return Err(ClusterError::Unavailable(
                "the API server is unavailable".into(),
            ));
        }
        self.released.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn git_agrees(&self, _: &Target, _: &Controller) -> Result<Option<bool>> {
        Ok(*self.agrees.lock().unwrap())
    }
}

const NOW: i64 = 1_800_000_000_000;

fn target(name: &str) -> Target {
    Target {
        namespace: "shop".into(),
        kind: "Deployment".into(),
        name: name.into(),
    }
}

fn new_hold(name: &str, expires_at: i64) -> NewHold {
    let owner = Controller::ArgoCd {
        application: "shop".into(),
        namespace: "argocd".into(),
    };
    NewHold {
        job_id: 7,
        target: target(name),
        controller: owner.clone(),
        placement: HoldPlacement {
            mechanism: HoldMechanism::ArgoAutomatedOff,
            saved: Some(r#"{"selfHeal":true}"#.into()),
        },
        change: GitChange {
            kind: ChangeKind::Memory,
            target: target(name),
            changes: vec![FieldChange {
                field: Field::MemoryLimit {
                    container: "web".into(),
                },
                value: "615Mi".into(),
            }],
            owner,
            revision: None,
        },
        created_at: NOW - 1_000,
        expires_at,
    }
}

async fn setup() -> (Store, Arc<Controllers>, Releaser) {
    let store = Store::connect("sqlite::memory:", &store::Options::default())
        .await
        .unwrap();
    let mut notify: NotifySettings = serde_yaml::from_str(
        "channels:\n  tg: {type: telegram, bot_token: t, chat_id: 1}\nroutes:\n  - channels: [tg]\n    events: [gitops_hold_released, escalation]\n",
    )
    .unwrap();
    notify.resolve(&|_| None).unwrap();
    let outbox = Arc::new(Outbox::new(&notify).unwrap());
    let cluster = Arc::new(Controllers::default());
    let releaser = Releaser::new(store.clone(), cluster.clone(), outbox);
    (store, cluster, releaser)
}

async fn events(store: &Store) -> Vec<String> {
    let rows = store.notifications().await.unwrap();
    rows.into_iter().map(|n| n.event).collect()
}

#[tokio::test]
async fn an_expired_hold_is_released_and_announced_once_by_racing_replicas() {
    let (store, cluster, one) = setup().await;
    let two = one.clone();
    let id = store.record_hold(&new_hold("web", NOW - 1)).await.unwrap();
    // Another Application's hold: it does not keep this one's Application paused.
    let mut other = new_hold("api", NOW + 60_000);
    other.controller = Controller::ArgoCd {
        application: "billing".into(),
        namespace: "argocd".into(),
    };
    let open = store.record_hold(&other).await.unwrap();
    let (a, b) = tokio::join!(one.pass(NOW), two.pass(NOW));
    let (a, b) = (a.unwrap(), b.unwrap());
    let released: Vec<_> = a.released.iter().chain(&b.released).collect();
    assert_eq!(released, [&(id, "expiry")], "{a:?} {b:?}");
    // Only the replica that claimed it undid the pause, recorded and announced it.
    assert_eq!(cluster.released.load(Ordering::SeqCst), 1);
    assert_eq!(events(&store).await, ["gitops_hold_released"]);
    let hold = store.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.released_by.as_deref(), Some("expiry"));
    assert_eq!(hold.released_at, Some(NOW));
    let body = &store.notifications().await.unwrap()[0].event_json;
    let event: crate::notify::Event = serde_json::from_str(body).unwrap();
    let report = event.gitops.unwrap();
    assert_eq!(report.released_by, "expiry");
    assert_eq!(report.hold_id, Some(id));
    assert_eq!(report.owner, "Argo CD Application argocd/shop");
    assert_eq!(event.target, "shop/Deployment/web");
    // The other hold is neither expired nor agreed with: it stays.
    assert!(
        store
            .hold(open)
            .await
            .unwrap()
            .unwrap()
            .released_at
            .is_none()
    );
    // A later pass has nothing more to say.
    assert_eq!(one.pass(NOW + 1).await.unwrap().released, []);
    assert_eq!(events(&store).await.len(), 1);
}

/// Past the grace after `created_at` (`NOW - 1 000`).
fn old_enough() -> i64 {
    NOW + i64::try_from(GIT_GRACE.as_millis()).unwrap()
}

#[tokio::test]
async fn a_hold_ends_early_once_the_controller_says_git_agrees_and_the_live_object_keeps_the_repair()
 {
    let (store, cluster, releaser) = setup().await;
    let id = store
        .record_hold(&new_hold("web", NOW + 3_600_000))
        .await
        .unwrap();
    *cluster.live.lock().unwrap() = Some("615Mi".into());
    for agrees in [None, Some(false)] {
        *cluster.agrees.lock().unwrap() = agrees;
        let pass = releaser.pass(old_enough()).await.unwrap();
        assert_eq!(pass.released, [], "{agrees:?}");
    }
    *cluster.agrees.lock().unwrap() = Some(true);
    let pass = releaser.pass(old_enough()).await.unwrap();
    assert_eq!(pass.released, [(id, "git")]);
    let hold = store.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.released_by.as_deref(), Some("git"));
}

#[tokio::test]
async fn a_synced_hold_younger_than_the_grace_is_kept() {
    let (store, cluster, releaser) = setup().await;
    store
        .record_hold(&new_hold("web", NOW + 3_600_000))
        .await
        .unwrap();
    *cluster.live.lock().unwrap() = Some("615Mi".into());
    *cluster.agrees.lock().unwrap() = Some(true);
    // Argo CD's `Synced` right after the hold was placed predates its comparison.
    let pass = releaser.pass(old_enough() - 2_000).await.unwrap();
    assert_eq!(pass.released, []);
    assert_eq!(store.open_holds().await.unwrap().len(), 1);
    assert_eq!(cluster.released.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_synced_hold_whose_live_value_is_gits_old_one_again_is_kept() {
    let (store, cluster, releaser) = setup().await;
    store
        .record_hold(&new_hold("web", NOW + 3_600_000))
        .await
        .unwrap();
    // Someone pressed Sync: the object is Git's again, so Argo CD says Synced.
    *cluster.live.lock().unwrap() = Some("512Mi".into());
    *cluster.agrees.lock().unwrap() = Some(true);
    let pass = releaser.pass(old_enough()).await.unwrap();
    assert_eq!(pass.released, []);
    assert_eq!(store.open_holds().await.unwrap().len(), 1);
    assert_eq!(cluster.released.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_pass_that_read_a_hold_as_expired_keeps_it_when_a_job_extended_it_meanwhile() {
    let (store, cluster, releaser) = setup().await;
    let id = store.record_hold(&new_hold("web", NOW - 1)).await.unwrap();
    let stale = store.hold(id).await.unwrap().unwrap();
    let change = stale.hold.change.clone();
    assert!(store.extend_hold(id, NOW + 60_000, &change).await.unwrap());
    assert_eq!(
        releaser.release(&stale, "expiry", NOW).await.unwrap(),
        Released::Already
    );
    assert_eq!(
        cluster.released.load(Ordering::SeqCst),
        0,
        "the pause stays"
    );
    assert!(store.hold(id).await.unwrap().unwrap().released_at.is_none());
    assert_eq!(events(&store).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_replica_with_a_stale_list_does_not_undo_the_pause_of_a_newer_hold() {
    let (store, cluster, one) = setup().await;
    let two = one.clone();
    let id = store.record_hold(&new_hold("web", NOW - 1)).await.unwrap();
    let stale = store.hold(id).await.unwrap().unwrap();
    assert_eq!(
        one.release(&stale, "expiry", NOW).await.unwrap(),
        Released::Now
    );
    // A new repair holds the object again; replica two still works from its old list.
    store
        .record_hold(&new_hold("web", NOW + 60_000))
        .await
        .unwrap();
    assert_eq!(
        two.release(&stale, "expiry", NOW).await.unwrap(),
        Released::Already
    );
    assert_eq!(cluster.released.load(Ordering::SeqCst), 1);
    assert_eq!(events(&store).await, ["gitops_hold_released"]);
}

#[tokio::test]
async fn a_controller_paused_for_two_objects_is_resumed_only_with_the_last_of_their_holds() {
    let (store, cluster, releaser) = setup().await;
    let web = store.record_hold(&new_hold("web", NOW - 1)).await.unwrap();
    let api = store
        .record_hold(&new_hold("api", NOW + 60_000))
        .await
        .unwrap();
    let pass = releaser.pass(NOW).await.unwrap();
    assert_eq!(pass.released, [(web, "expiry")]);
    assert_eq!(
        cluster.released.load(Ordering::SeqCst),
        0,
        "the Application stays paused for the hold of api"
    );
    let body = &store.notifications().await.unwrap()[0].event_json;
    let event: crate::notify::Event = serde_json::from_str(body).unwrap();
    let report = event.gitops.unwrap();
    assert!(
        report
            .hold
            .contains(&format!("stays paused for the open hold {api}")),
        "{}",
        report.hold
    );
    let pass = releaser.pass(NOW + 60_000).await.unwrap();
    assert_eq!(pass.released, [(api, "expiry")]);
    assert_eq!(cluster.released.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_release_is_counted_retried_and_told_to_people_once_when_it_persists() {
    let (store, cluster, releaser) = setup().await;
    let id = store.record_hold(&new_hold("web", NOW - 1)).await.unwrap();
    let attempts = usize::try_from(ESCALATE_AFTER_ATTEMPTS).unwrap() + 2;
    cluster.failing.store(attempts, Ordering::SeqCst);
    for n in 1..=attempts {
        let pass = releaser.pass(NOW).await.unwrap();
        assert_eq!(pass.failed, [id]);
        let hold = store.hold(id).await.unwrap().unwrap();
        assert_eq!(hold.release_attempts, i64::try_from(n).unwrap());
        assert!(hold.released_at.is_none());
        assert!(
            hold.release_error
                .as_deref()
                .unwrap()
                .contains("API server is unavailable"),
            "{hold:?}"
        );
    }
    assert_eq!(events(&store).await, ["escalation"]);
    let escalation = &store.notifications().await.unwrap()[0].event_json;
    let event: crate::notify::Event = serde_json::from_str(escalation).unwrap();
    assert!(
        event.reason.contains("could not be released"),
        "{}",
        event.reason
    );
    assert!(
        event.reason.contains("Argo CD Application argocd/shop"),
        "{}",
        event.reason
    );
    // The API server is back: the next pass releases it and clears the error.
    let pass = releaser.pass(NOW).await.unwrap();
    assert_eq!(pass.released, [(id, "expiry")]);
    let hold = store.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.release_error, None);
    assert_eq!(events(&store).await, ["escalation", "gitops_hold_released"]);
}

#[tokio::test]
async fn releasing_a_released_hold_announces_nothing() {
    let (store, _, releaser) = setup().await;
    let id = store
        .record_hold(&new_hold("web", NOW + 60_000))
        .await
        .unwrap();
    let hold = store.hold(id).await.unwrap().unwrap();
    assert_eq!(
        releaser.release(&hold, "api:ann", NOW).await.unwrap(),
        Released::Now
    );
    assert_eq!(
        releaser.release(&hold, "api:bob", NOW).await.unwrap(),
        Released::Already
    );
    let hold = store.hold(id).await.unwrap().unwrap();
    assert_eq!(hold.released_by.as_deref(), Some("api:ann"));
    assert_eq!(events(&store).await, ["gitops_hold_released"]);
}
