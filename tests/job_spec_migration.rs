//! The typed job contract's migration (0008): jobs stored with the three old JSON columns
//! (`params`, `escalate`, `verify`) read back as one typed `JobSpec` after the upgrade, on both
//! backends, in mode `auto` (0010's `jobs.mode` says so too).

use crate::both_backends;
use crate::common;

use std::time::Duration;

use aiops::job::{ChainStep, JobSpec};
use aiops::store::{Options, Store};
use common::{Db, TestDb};
use sqlx::migrate::Migrator;

/// The last migration before the typed contract.
const OLD_LEVEL: i64 = 7;

/// The old columns of a job, as `insert_job` wrote them before 0008.
const PARAMS: &str = r#"{"grace":"30s"}"#;
const CHAIN: &str = r#"[{"notify":"oncall"},{"playbook":"rollback","params":{"rollout_timeout":"1m"}},{"choose":"best","from":[{"playbook":"raise_memory","params":{}},{"playbook":"restart","params":{"force":true}}]}]"#;
const VERIFY: &str = r#"{"rollout":false,"rollout_timeout_ms":90000,"health_url":"http://127.0.0.1:9/healthz","resolved_within_ms":300000}"#;

async fn a_job_stored_in_the_old_shape_reads_back_typed_after_the_upgrade(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::new(db, dir.path()).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
    let all = match db {
        Db::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Db::Postgres => sqlx::migrate!("migrations/postgres"),
    };
    let old = Migrator::with_migrations(
        all.iter()
            .filter(|m| m.version <= OLD_LEVEL)
            .cloned()
            .collect(),
    );
    old.run(&pool).await.unwrap();

    let event: i64 = sqlx::query_scalar(
        "INSERT INTO alert_events (fingerprint, status, starts_at, alertname, labels, annotations, \
         generator_url, receiver, group_key, received_at) \
         VALUES ('fp', 'firing', 1, 'Down', '{}', '{}', '', 'aiops', '{}', 1) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // Exactly what `insert_job` wrote before 0008, a chain with every kind of step included;
    // the second job's verify is the column's default (rows from before 0003).
    let insert = "INSERT INTO jobs (alert_event_id, fingerprint, alertname, rule, playbook, params, escalate, \
         chain_index, target_namespace, target_kind, target_name, target_key, dry_run, state, not_before, \
         created_at, updated_at, verify) \
         VALUES ($1, 'fp', 'Down', 'r', $2, $3, $4, 0, 'prod', 'Deployment', $5, $6, 0, 'escalated', 1, 1, 1, $7) \
         RETURNING id";
    let chained: i64 = sqlx::query_scalar(insert)
        .bind(event)
        .bind("restart")
        .bind(PARAMS)
        .bind(CHAIN)
        .bind("api")
        .bind("prod/Deployment/api")
        .bind(VERIFY)
        .fetch_one(&pool)
        .await
        .unwrap();
    let plain: i64 = sqlx::query_scalar(insert)
        .bind(event)
        .bind("cleanup")
        .bind("{}")
        .bind("[]")
        .bind("web")
        .bind("prod/Deployment/web")
        .bind("{}")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = Store::connect(&test_db.url, &Options::default())
        .await
        .unwrap();
    let job = store.job(chained).await.unwrap().unwrap();
    // Typed, and holding exactly what the old columns held.
    let old = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        serde_json::to_value(&job.spec).unwrap(),
        serde_json::json!({
            "playbook": "restart",
            "params": old(PARAMS),
            "escalate": old(CHAIN),
            "verify": old(VERIFY),
            // Jobs from before the trust ladder did what `auto` does.
            "mode": "auto",
        })
    );
    assert!(matches!(
        &job.spec.chain[2],
        ChainStep::ChooseBest { from, .. } if from.len() == 2
    ));
    assert_eq!(
        job.spec.verify.resolved_within,
        Some(Duration::from_secs(300))
    );
    assert_eq!(job.playbook, "restart");
    let job = store.job(plain).await.unwrap().unwrap();
    assert_eq!(job.spec, JobSpec::new("cleanup"));
    store.close().await;
    // 0010's `jobs.mode`, which SQL filters on, reads `auto` for them too.
    let pool = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
    let modes: Vec<String> = sqlx::query_scalar("SELECT mode FROM jobs ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(modes, ["auto", "auto"]);
    pool.close().await;
}
both_backends!(a_job_stored_in_the_old_shape_reads_back_typed_after_the_upgrade);
