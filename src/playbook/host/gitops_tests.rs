//! Unit tests of the GitOps gate: skip, hold, act, unowned objects, dry runs and `gitops()`.
//!
//! The cluster is the in-memory one behind a thin wrapper that answers the GitOps calls (the
//! object's labels, reading fields back, placing holds), so the gate is tested on its own
//! terms; the backends' readings of real markers are their own tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::cluster::memory::MemoryCluster;
use crate::cluster::{self, Cluster, Memory, Replicas, Rollback, RolloutStatus, Scaled};
use crate::gitops::{
    Controller, Field, FieldChange, FieldState, GitChange, HoldMechanism, HoldPlacement, Manager,
    ObjectInfo,
};
use crate::rules::{ChangeKind, GitopsPolicy};
use crate::store::{NewHold, Store};

const STATE: &str = "workloads:\n  - namespace: prod\n    name: web\n    replicas: 2\n    revision: 3\n    history: [1, 2]\n    containers:\n      - name: web\n        memory: {request: 256Mi, limit: 512Mi}\n";

/// The memory cluster with an owner's labels on every workload, holds it records, and a
/// rollback that says which image it restores.
struct Owned {
    inner: MemoryCluster,
    labels: BTreeMap<String, String>,
    refuse_hold: Option<String>,
    holds: Mutex<Vec<String>>,
    /// The rollback's revisions differ only outside the container images.
    same_images: bool,
    /// A controller faster than the read-back: every memory change is set back at once.
    set_back_at_once: bool,
}

fn flux() -> BTreeMap<String, String> {
    [
        ("kustomize.toolkit.fluxcd.io/name", "apps"),
        ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn owned(labels: BTreeMap<String, String>) -> Arc<Owned> {
    Arc::new(Owned {
        inner: MemoryCluster::from_yaml(STATE).unwrap(),
        labels,
        refuse_hold: None,
        holds: Mutex::new(Vec::new()),
        same_images: false,
        set_back_at_once: false,
    })
}

#[async_trait]
impl Cluster for Owned {
    async fn restart(&self, t: &Target, d: bool) -> cluster::Result<()> {
        self.inner.restart(t, d).await
    }
    async fn rollout_status(&self, t: &Target) -> cluster::Result<RolloutStatus> {
        self.inner.rollout_status(t).await
    }
    async fn rollback(&self, t: &Target, d: bool) -> cluster::Result<Rollback> {
        let mut r = self.inner.rollback(t, d).await?;
        if self.same_images {
            return Ok(r);
        }
        r.restores = vec![FieldChange {
            field: Field::Image {
                container: "web".into(),
            },
            value: "web:v1".into(),
        }];
        Ok(r)
    }
    async fn memory(&self, t: &Target, c: Option<&str>) -> cluster::Result<Memory> {
        self.inner.memory(t, c).await
    }
    async fn set_memory(
        &self,
        t: &Target,
        c: &str,
        r: Option<i64>,
        l: i64,
        d: bool,
    ) -> cluster::Result<()> {
        if !self.set_back_at_once || d {
            return self.inner.set_memory(t, c, r, l, d).await;
        }
        let before = self.inner.memory(t, Some(c)).await?;
        self.inner.set_memory(t, c, r, l, d).await?;
        let limit = before.limit.expect("a limit to set back");
        self.inner.set_memory(t, c, before.request, limit, d).await
    }
    async fn last_terminations(&self, t: &Target) -> cluster::Result<Vec<String>> {
        self.inner.last_terminations(t).await
    }
    async fn delete_failed_pods(&self, n: &str, a: Duration, d: bool) -> cluster::Result<u64> {
        self.inner.delete_failed_pods(n, a, d).await
    }
    async fn delete_finished_jobs(&self, n: &str, a: Duration, d: bool) -> cluster::Result<u64> {
        self.inner.delete_finished_jobs(n, a, d).await
    }
    async fn replicas(&self, t: &Target) -> cluster::Result<Replicas> {
        self.inner.replicas(t).await
    }
    async fn scale(&self, t: &Target, r: i64, d: bool) -> cluster::Result<Scaled> {
        self.inner.scale(t, r, d).await
    }
    async fn object_info(&self, t: &Target) -> cluster::Result<ObjectInfo> {
        self.inner.replicas(t).await?;
        Ok(ObjectInfo {
            labels: self.labels.clone(),
            annotations: BTreeMap::new(),
            managers: vec![Manager {
                name: "kustomize-controller".into(),
                operation: "Apply".into(),
            }],
        })
    }
    async fn observe(&self, t: &Target, fields: &[Field]) -> cluster::Result<Vec<FieldState>> {
        let mut out = Vec::new();
        for f in fields {
            let value = match f {
                Field::MemoryLimit { container } => self
                    .inner
                    .memory(t, Some(container))
                    .await?
                    .limit
                    .map(crate::quantity::format_memory),
                Field::MemoryRequest { container } => self
                    .inner
                    .memory(t, Some(container))
                    .await?
                    .request
                    .map(crate::quantity::format_memory),
                Field::Replicas => Some(self.inner.replicas(t).await?.desired.to_string()),
                Field::RestartedAt => Some("2026-11-30T03:00:00Z".into()),
                Field::Image { .. } => Some("web:v1".into()),
            };
            out.push(FieldState {
                field: f.clone(),
                value,
                managers: vec!["aiops".into()],
            });
        }
        Ok(out)
    }
    async fn hold(
        &self,
        t: &Target,
        _: &Controller,
        dry_run: bool,
    ) -> cluster::Result<HoldPlacement> {
        if let Some(e) = &self.refuse_hold {
            return Err(cluster::Error::Refused(e.clone()));
        }
        if !dry_run {
            self.holds.lock().unwrap().push(t.to_string());
        }
        Ok(HoldPlacement {
            mechanism: HoldMechanism::FluxObjectAnnotation,
            saved: None,
        })
    }
    async fn release(&self, _: &Target, _: &Controller, _: &HoldPlacement) -> cluster::Result<()> {
        Ok(())
    }
    async fn git_agrees(&self, _: &Target, _: &Controller) -> cluster::Result<Option<bool>> {
        Ok(None)
    }
}

/// Runs `source` on `cluster` under `policy`, with a store and a job (id 7) when `with_store`.
fn gated(
    source: &str,
    cluster: Arc<Owned>,
    dry_run: bool,
    policy: Option<GitopsPolicy>,
    store: Option<(&tokio::runtime::Runtime, Store)>,
) -> RunResult {
    let rt_own;
    let (rt, store) = match store {
        Some((rt, s)) => (rt, Some(s)),
        None => {
            rt_own = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            (&rt_own, None)
        }
    };
    let _context = rt.enter();
    let runner = Runner::new();
    let playbook = super::super::Playbook {
        name: "t".into(),
        path: "t.rhai".into(),
        ast: runner.engine().compile(source).unwrap(),
        source: source.into(),
    };
    let target = Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "web".into(),
    };
    let input = RunInput::new(
        &Default::default(),
        &Default::default(),
        "fp",
        "2026-11-30T00:00:00Z",
        "firing",
        &serde_json::json!({}),
        &target,
    );
    let settings = HostSettings::default();
    let sink = store.clone().map(|store| StepSink { store, job_id: 7 });
    let mut ctx = RunContext::new(
        cluster,
        store.clone(),
        sink,
        rt.handle().clone(),
        dry_run,
        settings.clone(),
        http_client(&settings),
        Duration::from_secs(60),
    )
    .with_gitops(crate::gitops::GitopsSettings::default(), policy);
    if store.is_some() {
        let mut notify: crate::notify::NotifySettings = serde_yaml::from_str(
            "channels:\n  tg: {type: telegram, bot_token: t, chat_id: 1}\nroutes:\n  - channels: [tg]\n",
        )
        .unwrap();
        notify.resolve(&|_| None).unwrap();
        let outbox = Arc::new(crate::notify::Outbox::new(&notify).unwrap());
        let event = crate::notify::Event {
            namespace: "prod".into(),
            // The job row is not seeded: a notification about no job is the same message.
            job_id: None,
            ..Default::default()
        };
        ctx = ctx.with_notify(outbox, event);
    }
    runner.run(&playbook, input, Arc::new(ctx))
}

/// A live run of `source` under `gitops: hold`, with a store and an outbox.
fn under_hold(
    source: &str,
    c: &Arc<Owned>,
    rt: &tokio::runtime::Runtime,
    store: &Store,
) -> RunResult {
    gated(
        source,
        c.clone(),
        false,
        Some(GitopsPolicy::Hold),
        Some((rt, store.clone())),
    )
}

fn runtime_and_store() -> (tokio::runtime::Runtime, Store) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(Store::connect(
            "sqlite::memory:",
            &crate::store::Options::default(),
        ))
        .unwrap();
    (rt, store)
}

fn steps(r: &RunResult, action: &str) -> Vec<String> {
    r.steps
        .iter()
        .filter(|s| s.action == action)
        .map(|s| s.detail.clone())
        .collect()
}

const RAISE: &str = "set_memory(target, \"web\", (), quantity(\"615Mi\"));\nsuccess(\"raised\");\n";

#[test]
fn a_memory_raise_on_a_flux_owned_object_is_skipped_with_the_exact_git_change() {
    let c = owned(flux());
    let r = gated(RAISE, c.clone(), false, None, None);
    assert_eq!(
        r.outcome,
        Outcome::Inconclusive(
            "Flux Kustomization flux-system/apps owns prod/Deployment/web: make this change in Git: set resources.limits.memory of container web to 615Mi".into()
        ),
        "{r:#?}"
    );
    assert!(c.inner.actions().is_empty(), "{:?}", c.inner.actions());
    let skipped = r.gitops.skipped.clone().expect("skipped");
    assert_eq!(
        skipped.change.instruction(),
        "set resources.limits.memory of container web to 615Mi"
    );
    assert!(skipped.reason.contains("policy"), "{}", skipped.reason);
    assert!(r.gitops.applied.is_empty());
    assert_eq!(steps(&r, "gitops_skip").len(), 1, "{:#?}", r.steps);
    assert!(steps(&r, "gitops")[0].contains("owned by Flux Kustomization flux-system/apps"));
}

#[test]
fn a_skipped_rollback_names_the_image_to_revert_to_and_a_skipped_scale_the_replicas() {
    let r = gated(
        "rollback(target);\nsuccess(\"ok\");\n",
        owned(flux()),
        false,
        None,
        None,
    );
    assert!(
        r.outcome
            .message()
            .ends_with("make this change in Git: revert image of container web to web:v1"),
        "{:?}",
        r.outcome
    );
    let r = gated(
        "scale(target, 4);\nsuccess(\"ok\");\n",
        owned(flux()),
        false,
        None,
        None,
    );
    assert!(
        r.outcome
            .message()
            .ends_with("make this change in Git: set replicas to 4"),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.gitops.skipped.unwrap().change.kind, ChangeKind::Scale);
}

#[test]
fn a_restart_of_an_owned_object_acts_by_default_and_records_what_it_changed() {
    let c = owned(flux());
    let r = gated(
        "restart(target);\nsuccess(\"ok\");\n",
        c.clone(),
        false,
        None,
        None,
    );
    assert_eq!(r.outcome, Outcome::Success("ok".into()), "{r:#?}");
    assert_eq!(c.inner.actions().len(), 1);
    assert!(steps(&r, "gitops")[0].contains("gitops policy for restart changes: act"));
    let a = &r.gitops.applied[0];
    assert_eq!(a.kind, ChangeKind::Restart);
    assert_eq!(a.changes[0].field, Field::RestartedAt);
    assert!(a.owner.is_some() && a.hold_id.is_none());
    assert!(c.holds.lock().unwrap().is_empty());
}

#[test]
fn an_unowned_object_is_changed_with_no_gitops_step_and_no_hold_but_its_fields_are_recorded() {
    let c = owned(BTreeMap::new());
    let r = gated(RAISE, c.clone(), false, None, None);
    assert_eq!(r.outcome, Outcome::Success("raised".into()), "{r:#?}");
    assert!(steps(&r, "gitops").is_empty(), "{:#?}", r.steps);
    assert_eq!(r.gitops.owners[0].1.controller, None);
    assert_eq!(
        r.gitops.applied[0].changes,
        [FieldChange {
            field: Field::MemoryLimit {
                container: "web".into()
            },
            value: "615Mi".into()
        }]
    );
    assert!(r.gitops.applied[0].git.is_none());
    assert!(c.holds.lock().unwrap().is_empty());
}

#[test]
fn act_changes_an_owned_object_and_keeps_the_git_change_for_a_revert() {
    let c = owned(flux());
    let r = gated(RAISE, c.clone(), false, Some(GitopsPolicy::Act), None);
    assert_eq!(r.outcome, Outcome::Success("raised".into()), "{r:#?}");
    assert_eq!(c.inner.actions().len(), 1);
    let git = r.gitops.applied[0].git.as_ref().unwrap();
    assert_eq!(
        git.instruction(),
        "set resources.limits.memory of container web to 615Mi"
    );
}

#[test]
fn a_controller_that_sets_the_change_back_before_the_read_back_leaves_the_planned_value_to_watch() {
    // Flux's interval can be shorter than the time between aiops's write and its read-back;
    // the value read back is then Git's, and watching it would call the repair held.
    let c = Arc::new(Owned {
        set_back_at_once: true,
        ..Arc::into_inner(owned(flux())).unwrap()
    });
    let r = gated(RAISE, c.clone(), false, Some(GitopsPolicy::Act), None);
    assert_eq!(r.outcome, Outcome::Success("raised".into()), "{r:#?}");
    let watched = &r.gitops.applied[0].changes;
    assert_eq!(
        watched,
        &vec![FieldChange {
            field: Field::MemoryLimit {
                container: "web".into()
            },
            value: "615Mi".into(),
        }],
        "the watch expects the repair's value, so it sees the revert"
    );

    // Unowned, nothing was planned: what the cluster holds right after the write is expected.
    let c = Arc::new(Owned {
        set_back_at_once: true,
        ..Arc::into_inner(owned(BTreeMap::new())).unwrap()
    });
    let r = gated(RAISE, c, false, Some(GitopsPolicy::Act), None);
    assert_eq!(r.gitops.applied[0].changes[0].value, "512Mi");
}

#[test]
fn hold_places_records_and_announces_once_then_a_second_change_extends_the_open_hold() {
    let (rt, store) = runtime_and_store();
    let c = owned(flux());
    let r = under_hold(RAISE, &c, &rt, &store);
    assert_eq!(r.outcome, Outcome::Success("raised".into()), "{r:#?}");
    assert_eq!(c.holds.lock().unwrap().len(), 1);
    let open = rt.block_on(store.open_holds()).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(r.gitops.applied[0].hold_id, Some(open[0].id));
    assert!(steps(&r, "gitops_hold")[0].contains("paused Flux Kustomization flux-system/apps"));
    let sent = rt.block_on(store.notifications()).unwrap();
    assert_eq!(
        sent.iter().filter(|n| n.event == "gitops_hold").count(),
        1,
        "{sent:#?} {:#?}",
        r.steps
    );
    // The same change again: the open hold is extended, nothing new is placed or announced.
    let again = under_hold(RAISE, &c, &rt, &store);
    assert_eq!(again.outcome, Outcome::Success("raised".into()));
    assert_eq!(c.holds.lock().unwrap().len(), 1);
    assert_eq!(rt.block_on(store.open_holds()).unwrap().len(), 1);
    assert!(steps(&again, "gitops_hold")[0].contains("extended until"));
    assert_eq!(again.gitops.applied[0].hold_id, Some(open[0].id));
    let sent = rt.block_on(store.notifications()).unwrap();
    assert_eq!(sent.iter().filter(|n| n.event == "gitops_hold").count(), 1);
}

/// A HelmRelease's labels: its pause (`spec.suspend`) covers every workload it deploys.
fn helmrelease() -> BTreeMap<String, String> {
    [
        (crate::gitops::FLUX_HELMRELEASE_NAME, "shop"),
        (crate::gitops::FLUX_HELMRELEASE_NAMESPACE, "prod"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn a_second_workload_of_a_paused_helmrelease_shares_the_first_holds_placement_without_pausing_again()
 {
    let (rt, store) = runtime_and_store();
    let c = owned(helmrelease());
    let shop = Controller::FluxHelmRelease {
        name: "shop".into(),
        namespace: "prod".into(),
    };
    // Hold A, on another workload of the same HelmRelease, saved the unsuspended value.
    let worker = Target {
        namespace: "prod".into(),
        kind: "Deployment".into(),
        name: "worker".into(),
    };
    let first = HoldPlacement {
        mechanism: HoldMechanism::FluxHelmReleaseSuspend,
        saved: Some("false".into()),
    };
    let change = GitChange {
        kind: ChangeKind::Memory,
        target: worker.clone(),
        changes: vec![],
        owner: shop.clone(),
        revision: None,
    };
    let now = crate::store::now_ms();
    let a = rt
        .block_on(store.record_hold(&NewHold {
            job_id: 6,
            target: worker,
            controller: shop,
            placement: first.clone(),
            change,
            created_at: now,
            expires_at: now + 3_600_000,
        }))
        .unwrap();
    let r = under_hold(RAISE, &c, &rt, &store);
    assert_eq!(r.outcome, Outcome::Success("raised".into()), "{r:#?}");
    assert!(c.holds.lock().unwrap().is_empty(), "no second pause call");
    let open = rt.block_on(store.open_holds()).unwrap();
    let b = open.iter().find(|h| h.id != a).expect("hold B recorded");
    assert_eq!(b.hold.placement, first, "B carries A's saved value");
    assert!(
        steps(&r, "gitops_hold")[0].contains(&format!("already paused by hold #{a}")),
        "{:#?}",
        r.steps
    );
}

#[test]
fn a_rollback_with_no_image_difference_is_still_held_and_its_skip_names_the_revision() {
    let (rt, store) = runtime_and_store();
    let c = Arc::new(Owned {
        same_images: true,
        ..Arc::into_inner(owned(flux())).unwrap()
    });
    let r = under_hold("rollback(target);\nsuccess(\"ok\");\n", &c, &rt, &store);
    assert_eq!(r.outcome, Outcome::Success("ok".into()), "{r:#?}");
    assert_eq!(c.holds.lock().unwrap().len(), 1, "{:#?}", r.steps);
    let c = Arc::new(Owned {
        same_images: true,
        ..Arc::into_inner(owned(flux())).unwrap()
    });
    let r = gated(
        "rollback(target);\nsuccess(\"ok\");\n",
        c,
        false,
        None,
        None,
    );
    assert!(
        r.outcome.message().ends_with(
            "make this change in Git: revert the pod template to the previous revision (2); no container image differs — compare `kubectl rollout history deployment/web -n prod --revision=2`"
        ),
        "{:?}",
        r.outcome
    );
}

#[test]
fn a_hold_the_cluster_refuses_degrades_to_a_skip_saying_why() {
    let (rt, store) = runtime_and_store();
    let c = Arc::new(Owned {
        refuse_hold: Some("the Application is generated by an ApplicationSet".into()),
        ..Arc::into_inner(owned(flux())).unwrap()
    });
    let r = under_hold(RAISE, &c, &rt, &store);
    assert_eq!(r.outcome.kind(), "inconclusive");
    assert!(c.inner.actions().is_empty());
    let reason = r.gitops.skipped.unwrap().reason;
    assert_eq!(
        reason,
        "hold not possible: refused: the Application is generated by an ApplicationSet; skipped instead"
    );
    assert!(rt.block_on(store.open_holds()).unwrap().is_empty());
}

#[test]
fn an_offline_hold_has_nowhere_to_be_recorded_and_is_skipped() {
    let c = owned(flux());
    let r = gated(RAISE, c.clone(), false, Some(GitopsPolicy::Hold), None);
    assert_eq!(r.outcome.kind(), "inconclusive");
    assert!(c.holds.lock().unwrap().is_empty() && c.inner.actions().is_empty());
    assert!(
        r.gitops
            .skipped
            .unwrap()
            .reason
            .starts_with("hold not possible: ")
    );
}

#[test]
fn a_dry_run_says_what_it_would_hold_and_never_places_or_records_a_hold() {
    let (rt, store) = runtime_and_store();
    let c = owned(flux());
    let r = gated(
        RAISE,
        c.clone(),
        true,
        Some(GitopsPolicy::Hold),
        Some((&rt, store.clone())),
    );
    assert_eq!(r.outcome, Outcome::Success("raised".into()), "{r:#?}");
    assert!(c.holds.lock().unwrap().is_empty());
    assert!(rt.block_on(store.open_holds()).unwrap().is_empty());
    let hold = &steps(&r, "gitops_hold")[0];
    assert!(
        hold.starts_with(
            "dry run: would hold Flux Kustomization flux-system/apps for prod/Deployment/web for 2h"
        ),
        "{hold}"
    );
    assert!(r.gitops.applied.is_empty());
    // A dry run under skip says it would stop there.
    let r = gated(RAISE, owned(flux()), true, None, None);
    assert!(
        r.outcome
            .message()
            .starts_with("dry run: would stop here: "),
        "{:?}",
        r.outcome
    );
    assert!(steps(&r, "gitops_skip")[0].starts_with("dry run: would skip the change: "));
}

#[test]
fn gitops_answers_the_owner_and_the_policy_of_each_kind() {
    let src = "let g = gitops(target);\nsuccess(`${g.owned}|${g.controller}|${g.owner}|${g.name}|${g.namespace}|${g.managers}|${g.policy.restart}|${g.policy.rollback}|${g.policy.memory}|${g.policy.scale}`);\n";
    let r = gated(src, owned(flux()), false, None, None);
    assert_eq!(
        r.outcome,
        Outcome::Success(
            "true|flux_kustomization|Flux Kustomization flux-system/apps|apps|flux-system|[\"kustomize-controller\"]|act|skip|skip|skip".into()
        )
    );
    let r = gated(
        src,
        owned(BTreeMap::new()),
        false,
        Some(GitopsPolicy::Skip),
        None,
    );
    assert_eq!(
        r.outcome,
        Outcome::Success(
            "false||||| [\"kustomize-controller\"]|act|act|act|act".replace("| [", "|[")
        ),
    );
}

#[test]
fn a_restart_under_hold_needs_no_hold_because_git_keeps_nothing_of_it() {
    let (rt, store) = runtime_and_store();
    let c = owned(flux());
    let r = under_hold("restart(target);\nsuccess(\"ok\");\n", &c, &rt, &store);
    assert_eq!(r.outcome, Outcome::Success("ok".into()), "{r:#?}");
    assert!(c.holds.lock().unwrap().is_empty());
    assert!(rt.block_on(store.open_holds()).unwrap().is_empty());
    assert_eq!(
        steps(&r, "gitops_hold"),
        ["no hold needed: Flux Kustomization flux-system/apps keeps nothing of a restart in Git"]
    );
}
