//! The deploy module's tables: registered apps and their deployments.

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
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// What happened (the rollout message or the error).
    pub detail: Option<String>,
    /// Start (epoch ms).
    #[serde(serialize_with = "super::rfc3339::ms")]
    pub started_at: i64,
    /// End (epoch ms), None while running.
    #[serde(serialize_with = "super::rfc3339::opt_ms")]
    pub finished_at: Option<i64>,
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
    })
}

const APP_COLUMNS: &str = "name, namespace, spec, created_by, created_at, updated_at";
const DEPLOYMENT_COLUMNS: &str =
    "id, app, namespace, version, image, status, detail, started_at, finished_at";

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

    /// Records how a deployment ended (`succeeded` or `failed`) and returns the record.
    pub async fn finish_deployment(
        &self,
        id: i64,
        succeeded: bool,
        detail: &str,
    ) -> Result<DeploymentRecord> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE deployments SET status = $1, detail = $2, finished_at = $3 WHERE id = $4",
        )
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(detail)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *tx.tx)
        .await?;
        let record = deployment_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    /// The last `limit` deployments of an app, newest first.
    pub async fn deployments(&self, app: &str, limit: i64) -> Result<Vec<DeploymentRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = $1 \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        )))
        .bind(app)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_row).collect()
    }
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
