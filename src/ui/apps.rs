//! Registered apps: `/ui/apps` (the apps the viewer sees, with their latest deployment) and
//! `/ui/apps/{name}` (its spec, its manifests rendered read-only exactly as
//! `/api/apps/{name}/manifests` renders them, and its deployments).
//!
//! The list and the rendering are `crate::http::apps`' own functions, so the console and the
//! API never disagree on which apps a user sees or what an app deploys. Another app's page is
//! 404, like a missing one.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::catalog::rfc3339;
use super::session::console;
use super::{UiError, Viewer, page};
use crate::http::AppState;
use crate::http::apps::{render_stored, visible};
use crate::store::{AppRecord, DeploymentRecord};

/// Templates of this page group.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("apps.html", include_str!("templates/apps.html")),
    ("app.html", include_str!("templates/app.html")),
];

/// Words of this page group: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = &[
    ("apps.title", "Apps", "應用"),
    (
        "apps.lede",
        "Apps registered for deployment that you can see.",
        "您可檢視的已註冊部署應用。",
    ),
    (
        "apps.none",
        "No apps are registered in your namespaces.",
        "您的命名空間中沒有已註冊的應用。",
    ),
    ("apps.col.app", "App", "應用"),
    ("apps.col.namespace", "Namespace", "命名空間"),
    ("apps.col.last", "Latest deployment", "最近一次部署"),
    ("apps.col.updated", "Registered", "註冊時間"),
    ("apps.never", "Never deployed", "尚未部署"),
    ("apps.app", "App", "應用"),
    ("apps.back", "All apps", "所有應用"),
    ("apps.registered_by", "Registered by", "註冊者"),
    ("apps.spec", "Spec", "規格"),
    ("apps.manifests", "Manifests", "部署清單"),
    (
        "apps.manifests.lede",
        "What a deploy applies, rendered now from the spec (read-only).",
        "部署時會套用的內容，依規格即時產生（唯讀）。",
    ),
    (
        "apps.manifests.failed",
        "The manifests cannot be rendered",
        "無法產生部署清單",
    ),
    ("apps.deployments", "Deployments", "部署紀錄"),
    (
        "apps.deployments.none",
        "No deployments yet.",
        "尚無部署紀錄。",
    ),
    ("apps.d.version", "Version", "版本"),
    ("apps.d.image", "Image", "映像檔"),
    ("apps.d.status", "Status", "狀態"),
    ("apps.d.detail", "Detail", "詳細資訊"),
    ("apps.d.started", "Started", "開始時間"),
    ("apps.d.finished", "Finished", "結束時間"),
    ("apps.status.queued", "queued", "排隊中"),
    ("apps.status.running", "running", "部署中"),
    (
        "apps.steps",
        "Steps of the latest deployment",
        "最近一次部署的步驟",
    ),
    ("apps.step.pending", "pending", "等待中"),
    ("apps.step.running", "running", "進行中"),
    ("apps.step.succeeded", "succeeded", "成功"),
    ("apps.step.failed", "failed", "失敗"),
    ("apps.step.skipped", "skipped", "略過"),
    ("apps.step.not_run", "not run", "未執行"),
    ("apps.status.succeeded", "succeeded", "成功"),
    ("apps.status.failed", "failed", "失敗"),
];

/// CSS of this page group, appended to /ui/static/console.css.
pub(super) const CSS: &str = include_str!("static/apps.css");

/// How many deployments an app's page lists.
const DEPLOYMENTS: i64 = 20;

/// Routes of this page group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/apps", get(apps))
        .route("/ui/apps/{name}", get(app))
}

/// A deployment as the pages show it.
#[derive(Debug, Serialize, PartialEq)]
struct Deployment {
    version: String,
    image: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    status: String,
    /// Badge colour (the word is always next to it).
    tone: &'static str,
    detail: Option<String>,
    started_at: i64,
    started_rfc3339: String,
    finished_at: Option<i64>,
    finished_rfc3339: Option<String>,
}

fn deployment(d: &DeploymentRecord) -> Deployment {
    Deployment {
        version: d.version.clone(),
        image: d.image.clone(),
        tone: match d.status.as_str() {
            "succeeded" => "ok",
            "failed" => "bad",
            _ => "info",
        },
        // Only the states the store writes have words; anything else shows as running.
        status: match d.status.as_str() {
            s @ ("succeeded" | "failed" | "queued") => s.to_string(),
            _ => "running".to_string(),
        },
        detail: d.detail.clone(),
        started_at: d.started_at,
        started_rfc3339: rfc3339(d.started_at),
        finished_at: d.finished_at,
        finished_rfc3339: d.finished_at.map(rfc3339),
    }
}

/// A row of `/ui/apps`.
#[derive(Debug, Serialize)]
struct AppRow {
    name: String,
    namespace: String,
    updated_at: i64,
    updated_rfc3339: String,
    last: Option<Deployment>,
}

fn app_row(app: &AppRecord, last: Option<&DeploymentRecord>) -> AppRow {
    AppRow {
        name: app.name.clone(),
        namespace: app.namespace.clone(),
        updated_at: app.updated_at,
        updated_rfc3339: rfc3339(app.updated_at),
        last: last.map(deployment),
    }
}

#[derive(Serialize)]
struct AppsView {
    apps: Vec<AppRow>,
}

async fn apps(viewer: Viewer, State(st): State<AppState>) -> Result<Response, UiError> {
    let c = console(&st)?;
    let apps = visible(st.pipeline.store(), &viewer.claims)
        .await
        .map_err(|e| UiError::internal(e).in_lang(viewer.lang))?
        .iter()
        .map(|(a, d)| app_row(a, d.as_ref()))
        .collect();
    page(c, &viewer, "apps.html", AppsView { apps })
}

#[derive(Serialize)]
struct AppView {
    app: AppRow,
    created_by: String,
    /// The spec as YAML.
    spec: String,
    /// The manifests as one YAML stream (`aiops render`'s), or why they do not render.
    manifests: Result<String, String>,
    deployments: Vec<Deployment>,
    /// The latest deployment's steps (none for one recorded before steps existed).
    steps: Vec<Step>,
}

/// A deployment step as the app page lists it.
#[derive(Debug, Serialize)]
struct Step {
    name: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `not_run`.
    status: &'static str,
    tone: &'static str,
    detail: Option<String>,
}

async fn app(
    viewer: Viewer,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let store = st.pipeline.store();
    let fail = |e: crate::store::Error| UiError::internal(e).in_lang(viewer.lang);
    let app = store
        .app(&name)
        .await
        .map_err(fail)?
        .filter(|a| viewer.claims.can_see(&a.namespace))
        .ok_or(UiError::NotFound)?;
    let records: Vec<DeploymentRecord> = store
        .deployments(&app.name, &app.namespace, DEPLOYMENTS)
        .await
        .map_err(fail)?;
    let steps = match records.first() {
        Some(latest) => store
            .deployment_steps(latest.id)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|s| Step {
                name: s.name,
                status: s.status.as_str(),
                tone: match s.status {
                    crate::store::StepStatus::Succeeded => "ok",
                    crate::store::StepStatus::Failed => "bad",
                    _ => "info",
                },
                detail: s.detail,
            })
            .collect(),
        None => Vec::new(),
    };
    let deployments: Vec<Deployment> = records.iter().map(deployment).collect();
    let manifests = render_stored(&app, &st.deploy)
        .map(|r| r.to_stream())
        .map_err(|e| e.to_string());
    let spec = serde_yaml::to_string(&app.spec).unwrap_or_else(|_| app.spec.to_string());
    let view = AppView {
        app: app_row(&app, None),
        created_by: app.created_by.clone(),
        spec,
        manifests,
        deployments,
        steps,
    };
    page(c, &viewer, "app.html", view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str) -> DeploymentRecord {
        DeploymentRecord {
            id: 1,
            app: "shop".into(),
            namespace: "shop".into(),
            version: "1.2".into(),
            image: "shop:1.2".into(),
            status: status.into(),
            detail: None,
            started_at: 0,
            finished_at: None,
            requested_by: None,
            owner: None,
            heartbeat_at: None,
            skip_dns_check: false,
        }
    }

    #[test]
    fn a_deployment_status_is_a_word_with_a_matching_colour() {
        assert_eq!(
            (
                deployment(&record("succeeded")).status.as_str(),
                deployment(&record("succeeded")).tone
            ),
            ("succeeded", "ok")
        );
        assert_eq!(deployment(&record("failed")).tone, "bad");
        let odd = deployment(&record("paused?"));
        assert_eq!((odd.status.as_str(), odd.tone), ("running", "info"));
        assert_eq!(
            deployment(&record("running")).started_rfc3339,
            "1970-01-01T00:00:00Z"
        );
    }
}
