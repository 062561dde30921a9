//! The deploy module's tables: registered apps, their deployments and each deployment's
//! steps.
//!
//! A deployment is `queued` (by `POST /api/apps/{name}/deploy` or `aiops deploy --detach`) or
//! `running` from the start (`aiops deploy` runs it at once), then `succeeded` or `failed`. The
//! process running it is its `owner` and beats `heartbeat_at`; [`Store::fail_stale_deployments`]
//! fails one whose heartbeat stopped (its process died), so no deployment stays `running` after
//! its process is gone, and says so in the step that was running.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Error, Result, Store, WriteTx, now_ms};

/// A registered app.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AppRecord {
    /// The app's name (unique).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The app spec as registered (JSON).
    pub spec: serde_json::Value,
    /// Who registered it last (`cli`, or the API token's subject).
    pub created_by: String,
    /// First registration (epoch ms).
    #[serde(serialize_with = "super::rfc3339::ms")]
    pub created_at: i64,
    /// Last registration or deploy (epoch ms).
    #[serde(serialize_with = "super::rfc3339::ms")]
    pub updated_at: i64,
}

/// One deployment of an app.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeploymentRecord {
    /// Row id.
    pub id: i64,
    /// The app.
    pub app: String,
    /// Its namespace.
    pub namespace: String,
    /// The version deployed.
    pub version: String,
    /// The image deployed.
    pub image: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// What happened (the rollout message or the error).
    pub detail: Option<String>,
    /// Start (epoch ms).
    #[serde(serialize_with = "super::rfc3339::ms")]
    pub started_at: i64,
    /// End (epoch ms), None while running.
    #[serde(serialize_with = "super::rfc3339::opt_ms")]
    pub finished_at: Option<i64>,
    /// Who asked for it (`cli`, or the API token's subject); None for deployments recorded
    /// before steps existed.
    pub requested_by: Option<String>,
    /// The process running it (`<host>-<pid>`), once claimed.
    pub owner: Option<String>,
    /// Its owner's last sign of life (epoch ms).
    #[serde(serialize_with = "super::rfc3339::opt_ms")]
    pub heartbeat_at: Option<i64>,
    /// Whether the DNS check was skipped on request (`--skip-dns-check`, `skip_dns_check`).
    pub skip_dns_check: bool,
}

/// Where a deployment step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started yet.
    Pending,
    /// Started, not finished.
    Running,
    /// Done.
    Succeeded,
    /// Failed: the deployment stops here, and its detail says why.
    Failed,
    /// Nothing to do for this app (a docker app is not built), or skipped on request; the
    /// detail says which.
    Skipped,
    /// Never started, because an earlier step failed.
    NotRun,
}

impl StepStatus {
    /// Every status, as stored.
    pub const ALL: [StepStatus; 6] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::NotRun,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::NotRun => "not_run",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<StepStatus> {
        StepStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One step of a deployment.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepRecord {
    /// 0-based order.
    pub position: i64,
    /// `check_dns`, `detect_framework`, `create_namespace`, `build_image`, `deploy_app`,
    /// `configure_ingress`, `setup_ssl`, `configure_monitoring` or `setup_auto_repair`.
    pub name: String,
    /// Where it is.
    pub status: StepStatus,
    /// What it did, or why it failed or was skipped.
    pub detail: Option<String>,
    /// Start (epoch ms).
    #[serde(serialize_with = "super::rfc3339::opt_ms")]
    pub started_at: Option<i64>,
    /// End (epoch ms).
    #[serde(serialize_with = "super::rfc3339::opt_ms")]
    pub finished_at: Option<i64>,
}

/// A deployment about to be recorded, with its steps.
#[derive(Clone, Debug)]
pub struct NewDeployment<'a> {
    /// The app (registered).
    pub app: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The version to deploy.
    pub version: &'a str,
    /// The image to deploy (for a source build, where the build pushes it).
    pub image: &'a str,
    /// Who asks.
    pub requested_by: &'a str,
    /// The DNS check is skipped on request.
    pub skip_dns_check: bool,
    /// The steps' names, in order.
    pub steps: &'a [&'a str],
    /// `Some(owner)`: recorded `running`, owned by this process, which runs it now (`aiops
    /// deploy`); `None`: recorded `queued`, for a daemon to claim.
    pub run_by: Option<&'a str>,
    /// When it is queued (epoch ms), kept as `started_at`: a build's tag and Job name derive
    /// from it, so the process that runs it builds exactly the image recorded here.
    pub queued_at: i64,
}

fn app_row(row: &AnyRow) -> Result<AppRecord> {
    let spec: String = row.try_get("spec")?;
    Ok(AppRecord {
        name: row.try_get("name")?,
        namespace: row.try_get("namespace")?,
        spec: serde_json::from_str(&spec).map_err(|e| Error::Corrupt {
            column: "apps.spec",
            message: e.to_string(),
        })?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn deployment_row(row: &AnyRow) -> Result<DeploymentRecord> {
    let skip: i64 = row.try_get("skip_dns_check")?;
    Ok(DeploymentRecord {
        id: row.try_get("id")?,
        app: row.try_get("app")?,
        namespace: row.try_get("namespace")?,
        version: row.try_get("version")?,
        image: row.try_get("image")?,
        status: row.try_get("status")?,
        detail: row.try_get("detail")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        requested_by: row.try_get("requested_by")?,
        owner: row.try_get("owner")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        skip_dns_check: skip != 0,
    })
}

fn step_row(row: &AnyRow) -> Result<StepRecord> {
    let status: String = row.try_get("status")?;
    Ok(StepRecord {
        position: row.try_get("position")?,
        name: row.try_get("name")?,
        status: StepStatus::parse(&status).ok_or_else(|| Error::Corrupt {
            column: "deployment_steps.status",
            message: format!("unknown status {status:?}"),
        })?,
        detail: row.try_get("detail")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

const APP_COLUMNS: &str = "name, namespace, spec, created_by, created_at, updated_at";
const DEPLOYMENT_COLUMNS: &str = "id, app, namespace, version, image, status, detail, started_at, \
     finished_at, requested_by, owner, heartbeat_at, skip_dns_check";
const STEP_COLUMNS: &str = "position, name, status, detail, started_at, finished_at";

impl Store {
    /// Registers an app, or replaces the spec of the app of that name. Returns the record.
    pub async fn upsert_app(
        &self,
        name: &str,
        namespace: &str,
        spec: &serde_json::Value,
        by: &str,
    ) -> Result<AppRecord> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO apps (name, namespace, spec, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (name) DO UPDATE SET namespace = excluded.namespace, spec = excluded.spec, \
             created_by = excluded.created_by, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(namespace)
        .bind(spec.to_string())
        .bind(by)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE name = $1"
        )))
        .bind(name)
        .fetch_one(&mut *tx.tx)
        .await?;
        let record = app_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every registered app, by name.
    pub async fn apps(&self) -> Result<Vec<AppRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM apps ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_row).collect()
    }

    /// One app by name.
    pub async fn app(&self, name: &str) -> Result<Option<AppRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_row).transpose()
    }

    /// Records the start of a deployment (`running`). Returns its id.
    pub async fn start_deployment(
        &self,
        app: &str,
        namespace: &str,
        version: &str,
        image: &str,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO deployments (app, namespace, version, image, status, started_at) \
             VALUES ($1, $2, $3, $4, 'running', $5) RETURNING id",
        )
        .bind(app)
        .bind(namespace)
        .bind(version)
        .bind(image)
        .bind(now_ms())
        .fetch_one(&mut *tx.tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        Ok(id)
    }

    /// Records a deployment and its steps (all `pending`): `queued` for a daemon to claim, or
    /// `running` and owned by `run_by`, which runs it now. Returns its id.
    pub async fn queue_deployment(&self, new: &NewDeployment<'_>) -> Result<i64> {
        let now = new.queued_at;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO deployments (app, namespace, version, image, status, started_at, \
             requested_by, owner, heartbeat_at, skip_dns_check) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(new.app)
        .bind(new.namespace)
        .bind(new.version)
        .bind(new.image)
        .bind(if new.run_by.is_some() {
            "running"
        } else {
            "queued"
        })
        .bind(now)
        .bind(new.requested_by)
        .bind(new.run_by)
        .bind(new.run_by.map(|_| now))
        .bind(i64::from(new.skip_dns_check))
        .fetch_one(&mut *tx.tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        for (position, name) in new.steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO deployment_steps (deployment_id, position, name, status) \
                 VALUES ($1, $2, $3, 'pending')",
            )
            .bind(id)
            .bind(position as i64)
            .bind(*name)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Claims the oldest queued deployment for `owner` (`running`, heartbeat now). Of two
    /// processes claiming at once, exactly one gets it.
    pub async fn claim_deployment(&self, owner: &str) -> Result<Option<DeploymentRecord>> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "SELECT id FROM deployments WHERE status = 'queued' ORDER BY started_at, id LIMIT 1",
        )
        .fetch_optional(&mut *tx.tx)
        .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        let now = now_ms();
        // The status test makes the claim safe on PostgreSQL too, where another replica's
        // transaction may have claimed it since the SELECT: then nothing is updated.
        // `started_at` stays the time it was queued (its build's tag derives from it).
        let claimed = sqlx::query(
            "UPDATE deployments SET status = 'running', owner = $1, heartbeat_at = $2 \
             WHERE id = $3 AND status = 'queued'",
        )
        .bind(owner)
        .bind(now)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *tx.tx)
        .await?;
        let record = deployment_row(&row)?;
        tx.commit().await?;
        Ok(Some(record))
    }

    /// Whether any deployment is queued or running: the deploy worker's cheap look (a read,
    /// no write lock), so a daemon with nothing to deploy never competes with intake.
    pub async fn has_active_deployments(&self) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM deployments WHERE status IN ('queued', 'running') LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Beats a running deployment's heartbeat. False when it is no longer `owner`'s to run
    /// (failed as stale by another process meanwhile): the owner must stop.
    pub async fn heartbeat_deployment(&self, id: i64, owner: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE deployments SET heartbeat_at = $1 \
             WHERE id = $2 AND owner = $3 AND status = 'running'",
        )
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Marks a step `running` (with its start time), if deployment `id` is still `owner`'s to
    /// run. False when it is not (another process failed it as stale): the owner must stop.
    pub async fn start_step(&self, id: i64, owner: &str, position: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE deployment_steps SET status = 'running', started_at = $1 \
             WHERE deployment_id = $2 AND position = $3 AND EXISTS (SELECT 1 FROM deployments \
             WHERE id = $2 AND owner = $4 AND status = 'running')",
        )
        .bind(now_ms())
        .bind(id)
        .bind(position)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Records how a step ended (`succeeded`, `failed` or `skipped`) and what it did or why,
    /// if deployment `id` is still `owner`'s; false when it is not.
    pub async fn finish_step(
        &self,
        id: i64,
        owner: &str,
        position: i64,
        status: StepStatus,
        detail: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE deployment_steps SET status = $1, detail = $2, finished_at = $3, \
             started_at = COALESCE(started_at, $3) WHERE deployment_id = $4 AND position = $5 \
             AND EXISTS (SELECT 1 FROM deployments WHERE id = $4 AND owner = $6 \
             AND status = 'running')",
        )
        .bind(status.as_str())
        .bind(detail)
        .bind(now)
        .bind(id)
        .bind(position)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Ends deployment `id` (`succeeded` or `failed`) if it is still `owner`'s to run, and
    /// returns the record; `None` when another process failed it meanwhile (left as it is).
    pub async fn finish_owned_deployment(
        &self,
        id: i64,
        owner: &str,
        succeeded: bool,
        detail: &str,
    ) -> Result<Option<DeploymentRecord>> {
        let mut tx = self.begin_write().await?;
        // A write, not a read: on PostgreSQL it takes the row's lock, and when a process
        // failing the deployment as stale committed first, READ COMMITTED re-checks the WHERE
        // on the row it waited for and finds it no longer running. So the two never both end
        // it (nor both announce it); that one's UPDATE, in turn, waits here and then finds it
        // ended. SQLite's BEGIN IMMEDIATE already runs the two one after the other.
        let ours = sqlx::query(
            "UPDATE deployments SET owner = owner \
             WHERE id = $1 AND owner = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        if !ours {
            return Ok(None);
        }
        let record = finish(&mut tx, id, succeeded, detail, now_ms()).await?;
        tx.commit().await?;
        Ok(Some(record))
    }

    /// Fails every `running` deployment whose heartbeat is older than `stale_after` (its
    /// process died or hung): the step that was running is failed with `why`, the steps after
    /// it are `not_run`. Returns the deployments failed.
    pub async fn fail_stale_deployments(
        &self,
        stale_after: std::time::Duration,
        why: &str,
    ) -> Result<Vec<DeploymentRecord>> {
        let now = now_ms();
        let before = now - super::ms(stale_after);
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id, owner FROM deployments WHERE status = 'running' \
             AND COALESCE(heartbeat_at, started_at) < $1",
        )
        .bind(before)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut failed = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let owner: Option<String> = row.try_get("owner")?;
            let reason = format!(
                "{why} (owner {}, no heartbeat for over {})",
                owner.as_deref().unwrap_or("unknown"),
                humantime::format_duration(stale_after)
            );
            // Still running and still silent: on PostgreSQL its owner may have finished or
            // beaten since the SELECT, and then it is left alone.
            let still = sqlx::query(
                "UPDATE deployments SET status = 'failed', detail = $1, finished_at = $2 \
                 WHERE id = $3 AND status = 'running' AND COALESCE(heartbeat_at, started_at) < $4",
            )
            .bind(&reason)
            .bind(now)
            .bind(id)
            .bind(before)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if still == 0 {
                continue;
            }
            let step: Option<String> = sqlx::query_scalar(
                "UPDATE deployment_steps SET status = 'failed', detail = $1, finished_at = $2 \
                 WHERE deployment_id = $3 AND status = 'running' RETURNING name",
            )
            .bind(&reason)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx.tx)
            .await?;
            // Named like a step that failed in its run ("deploy_app failed: …"), so the
            // deployment's detail and its announcement say where it stopped.
            let detail = match step {
                Some(step) => format!("{step} failed: {reason}"),
                None => reason,
            };
            failed.push(finish(&mut tx, id, false, &detail, now).await?);
        }
        tx.commit().await?;
        Ok(failed)
    }

    /// One deployment by id.
    pub async fn deployment(&self, id: i64) -> Result<Option<DeploymentRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deployment_row).transpose()
    }

    /// A deployment's steps, in order (none for deployments recorded before steps existed).
    pub async fn deployment_steps(&self, id: i64) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM deployment_steps WHERE deployment_id = $1 ORDER BY position"
        )))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step_row).collect()
    }

    /// Records how a deployment ended (`succeeded` or `failed`) and returns the record; steps
    /// still `pending` become `not_run`.
    pub async fn finish_deployment(
        &self,
        id: i64,
        succeeded: bool,
        detail: &str,
    ) -> Result<DeploymentRecord> {
        let mut tx = self.begin_write().await?;
        let record = finish(&mut tx, id, succeeded, detail, now_ms()).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The last `limit` deployments of an app in `namespace`, newest first. An app name
    /// registered again in another namespace keeps its earlier deployments; they are not this
    /// registration's, so they are left out here, before the limit (not after it, which could
    /// leave fewer than `limit` or none).
    pub async fn deployments(
        &self,
        app: &str,
        namespace: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = $1 AND namespace = $2 \
             ORDER BY started_at DESC, id DESC LIMIT $3"
        )))
        .bind(app)
        .bind(namespace)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_row).collect()
    }
}

/// Ends deployment `id` inside `tx`: its status, detail and end; pending steps `not_run`.
async fn finish(
    tx: &mut WriteTx,
    id: i64,
    succeeded: bool,
    detail: &str,
    now: i64,
) -> Result<DeploymentRecord> {
    sqlx::query("UPDATE deployments SET status = $1, detail = $2, finished_at = $3 WHERE id = $4")
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(detail)
        .bind(now)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
    sqlx::query(
        "UPDATE deployment_steps SET status = 'not_run' \
         WHERE deployment_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx.tx)
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *tx.tx)
    .await?;
    deployment_row(&row)
}

impl WriteTx {
    /// The notification channels or routes the apps registered in `namespace` name in their
    /// spec (`notifications`), in app-name order, without repeats.
    pub async fn app_notification_targets(&mut self, namespace: &str) -> Result<Vec<String>> {
        if self.memo.on
            && let Some(names) = self.memo.app_targets.get(namespace)
        {
            return Ok(names.clone());
        }
        let names = self.read_app_notification_targets(namespace).await?;
        if self.memo.on {
            self.memo
                .app_targets
                .insert(namespace.to_string(), names.clone());
        }
        Ok(names)
    }

    async fn read_app_notification_targets(&mut self, namespace: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT spec FROM apps WHERE namespace = $1 ORDER BY name")
            .bind(namespace)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut out: Vec<String> = Vec::new();
        for r in &rows {
            let text: String = r.try_get("spec")?;
            // A spec that no longer parses must not stop a notification: skip its names.
            let Ok(spec) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            for name in spec["notifications"].as_array().into_iter().flatten() {
                if let Some(n) = name.as_str()
                    && !out.iter().any(|o| o == n)
                {
                    out.push(n.to_string());
                }
            }
        }
        Ok(out)
    }

    /// The `display_name` of the app registered as `app` in `namespace`, when its spec has
    /// one: messages about the app use it instead of the bare `app` label.
    pub async fn app_display_name(&mut self, namespace: &str, app: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT spec FROM apps WHERE name = $1 AND namespace = $2")
            .bind(app)
            .bind(namespace)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text: String = row.try_get("spec")?;
        // A spec that no longer parses must not stop a notification: the label is used.
        Ok(serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|spec| spec["display_name"].as_str().map(str::to_string))
            .filter(|d| !d.trim().is_empty()))
    }
}
