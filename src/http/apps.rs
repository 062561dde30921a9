//! `/api/apps`: register apps for the deploy module, read their manifests, deploy them and
//! follow each deployment's steps.
//!
//! Same rules as the rest of `/api`: a token sees only the apps whose namespace it names
//! (admins every app); another app answers 404 exactly as a missing one and never appears in
//! the list; registering needs editor or admin and is audited whatever its outcome.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use axum::body::Body;

use super::auth::Claims;
use super::limits;
use super::respond::{audit, internal, not_found};
use super::{ApiError, AppState};
use crate::deploy::render::Error as RenderError;
use crate::deploy::{AppSpec, render};
use crate::store::{AppRecord, DeploymentRecord, Store};

/// The /api/apps routes (merged into the /api router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/apps", get(list_apps).post(register))
        .route("/api/apps/{name}/manifests", get(manifests))
        .route("/api/apps/{name}/deploy", post(deploy))
        .route("/api/apps/{name}/deployments", get(list_deployments))
        .route("/api/apps/{name}/deployments/{id}", get(get_deployment))
        .route("/api/templates", get(templates))
}

/// The template catalog: frameworks (with what each renders to), plans, source types and the
/// spec's fields. Any token may read it: it holds nothing of any app.
async fn templates(_claims: Claims, State(st): State<AppState>) -> Result<Response, ApiError> {
    let catalog = crate::deploy::catalog::catalog(&st.deploy).map_err(internal)?;
    Ok(Json(catalog).into_response())
}

async fn list_apps(claims: Claims, State(st): State<AppState>) -> Result<Response, ApiError> {
    let items: Vec<_> = visible(st.pipeline.store(), &claims)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|(app, last)| json!({"app": app, "last_deployment": last}))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// The apps `claims` may see, each with its latest deployment (shared with the console's
/// `/ui/apps`, so both list exactly the same apps).
pub async fn visible(
    store: &Store,
    claims: &Claims,
) -> Result<Vec<(AppRecord, Option<DeploymentRecord>)>, crate::store::Error> {
    let mut items = Vec::new();
    for app in store.apps().await? {
        if !claims.can_see(&app.namespace) {
            continue;
        }
        // Only this registration's: an earlier one in another namespace may be an app the
        // token cannot see.
        let last = store
            .deployments(&app.name, &app.namespace, 1)
            .await?
            .into_iter()
            .next();
        items.push((app, last));
    }
    Ok(items)
}

/// Why a registered app's manifests cannot be rendered now.
#[derive(Debug, thiserror::Error)]
pub enum Unrendered {
    /// The stored spec no longer parses (a newer binary's spec read by an older one, say).
    #[error("stored spec of app {app} no longer parses: {message}")]
    Spec {
        /// The app.
        app: String,
        /// The parse error.
        message: String,
    },
    /// The templates refuse the spec (an override template changed since it was registered).
    #[error("{0}")]
    Render(String),
}

/// A registered app's manifests, rendered as `/api/apps/{name}/manifests` and the console's
/// `/ui/apps/{name}` show them.
pub fn render_stored(
    app: &AppRecord,
    opts: &crate::deploy::Options,
) -> Result<crate::deploy::Rendered, Unrendered> {
    let mut spec: AppSpec =
        serde_json::from_value(app.spec.clone()).map_err(|e| Unrendered::Spec {
            app: app.name.clone(),
            message: e.to_string(),
        })?;
    // A spec stored before the app-<name> default names no namespace and meant its name.
    spec.keep_namespace(&app.namespace);
    render(&spec, opts).map_err(|e| Unrendered::Render(e.to_string()))
}

/// Registers (201) or replaces (200) an app from its spec (JSON, or YAML).
///
/// Cheapest first: the token and its role are checked before a byte of the body is read, the
/// body is read within `api.max_body_bytes` and `http.body_read_timeout`, its structure is
/// bounded ([`limits::check_structure`]) before the YAML parser sees it, and the parse runs on a
/// blocking thread, never on the async runtime.
async fn register(claims: Claims, State(st): State<AppState>, body: Body) -> Response {
    let store = st.pipeline.store().clone();
    let (resp, resource, detail) = match registration(&claims, &st, body).await {
        Ok((status, app)) => (
            (status, Json(json!(app))).into_response(),
            format!("app {}", app.name),
            json!({"name": app.name, "namespace": app.namespace}),
        ),
        Err((e, detail)) => (e.into_response(), "app".to_string(), detail),
    };
    let status = resp.status();
    audit(&store, &claims, "POST /api/apps", resource, status, detail).await;
    resp
}

async fn registration(
    claims: &Claims,
    st: &AppState,
    body: Body,
) -> Result<(StatusCode, crate::store::AppRecord), (ApiError, serde_json::Value)> {
    if !claims.can_write() {
        // Discarded unparsed, only so the client reads the 403 rather than a reset.
        limits::discard(body, st.api_max_body_bytes).await;
        return Err((
            ApiError::new(StatusCode::FORBIDDEN, "viewer tokens cannot write"),
            json!({"error": "viewer tokens cannot write"}),
        ));
    }
    let unread = |e: ApiError| {
        let detail = json!({"error": "body refused", "status": e.status().as_u16()});
        (e, detail)
    };
    let bytes = limits::read_body(body, st.api_max_body_bytes)
        .await
        .map_err(unread)?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        unread(ApiError::new(StatusCode::BAD_REQUEST, "the body is not UTF-8").field("body"))
    })?;
    limits::check_structure(&text, st.api_max_depth)
        .map_err(|m| unread(ApiError::new(StatusCode::BAD_REQUEST, m).field("body")))?;
    let spec = tokio::task::spawn_blocking(move || AppSpec::parse(&text, "request body"))
        .await
        .map_err(|e| unread(internal(format!("app spec parse task failed: {e}"))))?
        .map_err(|e| {
            let field = e
                .problems()
                .first()
                .map_or_else(|| "body".to_string(), |p| p.field.clone());
            // The message lists every bad field; `field` names the first.
            (
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).field(field),
                json!({"error": "invalid app spec"}),
            )
        })?;
    let store = st.pipeline.store();
    let mut spec = spec;
    let existing = store.app(&spec.name).await.map_err(|e| {
        let detail = json!({"name": spec.name});
        (internal(e), detail)
    })?;
    // Registered before the app-<name> default: it stays in its namespace, if this token may
    // see that one (otherwise the conflict below answers as for any hidden app).
    if let Some(other) = &existing
        && claims.can_see(&other.namespace)
    {
        spec.keep_namespace(&other.namespace);
    }
    let detail = json!({"name": spec.name, "namespace": spec.namespace()});
    if !claims.can_see(&spec.namespace()) {
        return Err((not_found("app"), detail));
    }
    // A name is unique across namespaces; one taken in an app this token cannot see must not
    // be revealed, nor taken over.
    if let Some(other) = &existing
        && other.namespace != spec.namespace()
    {
        let e = if claims.can_see(&other.namespace) {
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "app {} is registered in namespace {}",
                    spec.name, other.namespace
                ),
            )
            .field("name")
        } else {
            not_found("app")
        };
        return Err((e, detail));
    }
    // Refuse what would not render (an override template the spec breaks, say) now, not at
    // the first deploy.
    // A git source names no framework: it is detected now, from the repository, so the app
    // is registered with what its files prove (or refused with what was found).
    if let Some(detected) = detect_for_registration(&spec, &st.source_hosts)
        .await
        .map_err(|e| (e, detail.clone()))?
    {
        tracing::info!(app = %spec.name, framework = %detected.framework, evidence = ?detected.evidence, "framework detected");
        spec.framework = Some(detected.framework);
    }
    // A git or upload app without an image yet renders once it is built; that is checked at
    // its deploy.
    match render(&spec, &st.deploy) {
        Ok(_) | Err(RenderError::Unresolved { .. }) => {}
        Err(e) => {
            return Err((
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
                detail.clone(),
            ));
        }
    }
    let spec_json = serde_json::to_value(&spec).unwrap_or_default();
    let app = store
        .upsert_app(&spec.name, &spec.namespace(), &spec_json, &claims.sub)
        .await
        .map_err(|e| (internal(e), detail))?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, app))
}

/// Detects the framework of a git app that names none: `None` when there is nothing to detect
/// (a docker app, a framework given, an upload, which is detected when its archive is read at
/// deploy). Only anonymous network sources (https, http, git): a `file://` URL would let an API
/// caller probe the daemon's own disk and ssh would use the daemon's keys, so both are refused
/// here unless the spec names the framework.
async fn detect_for_registration(
    spec: &AppSpec,
    allowed_hosts: &[String],
) -> Result<Option<crate::deploy::detect::Detection>, ApiError> {
    use crate::deploy::detect::{self, DetectOptions, Source};
    use crate::deploy::spec::SourceType;
    let (SourceType::Git, None, Some(url)) = (spec.source_type, spec.framework, &spec.source_url)
    else {
        return Ok(None);
    };
    if let Err(problem) = detect::remote_source_allowed(url, allowed_hosts) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, problem).field("source_url"));
    }
    let source = Source::Git {
        url: url.clone(),
        reference: None,
    };
    match detect::detect(&source, &DetectOptions::default()).await {
        Ok(d) => Ok(Some(d)),
        // Bad input about the source (nothing proven, two frameworks, an unreachable or
        // unknown repository): the caller's to fix, with what was found.
        Err(e) if !matches!(e, detect::Error::Internal(_) | detect::Error::Io { .. }) => Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("framework: {e}"))
                .field("framework"),
        ),
        Err(e) => Err(internal(e)),
    }
}

/// Query of /api/apps/{name}/manifests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestsQuery {
    /// `json` (default) or `yaml` (the `aiops render` stream).
    format: Option<String>,
}

async fn manifests(
    claims: Claims,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ManifestsQuery>,
) -> Result<Response, ApiError> {
    let app = visible_app(&st, &claims, &name).await?;
    let rendered = render_stored(&app, &st.deploy).map_err(|e| match e {
        Unrendered::Spec { .. } => internal(e),
        Unrendered::Render(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
    })?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(json!({
            "app": app.name,
            "namespace": app.namespace,
            "objects": rendered.objects.iter().map(|m| &m.object).collect::<Vec<_>>(),
            "alertmanager": rendered.alertmanager,
            "dashboard": serde_json::from_str::<serde_json::Value>(&rendered.dashboard).unwrap_or_default(),
        }))
        .into_response()),
        Some("yaml") => Ok((
            [(header::CONTENT_TYPE, "application/yaml")],
            rendered.to_stream(),
        )
            .into_response()),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("format {other:?}: json or yaml"),
        )
        .field("format")),
    }
}

/// Body of `POST /api/apps/{name}/deploy` (may be empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Deploy without checking that the domain resolves to the ingress; recorded.
    #[serde(default)]
    skip_dns_check: bool,
}

/// A deployment with its steps, as `/api/apps/{name}/deployments/{id}` shows it.
#[derive(Debug, serde::Serialize)]
pub struct DeploymentView {
    /// The deployment.
    #[serde(flatten)]
    pub deployment: DeploymentRecord,
    /// Its steps, in order.
    pub steps: Vec<crate::store::StepRecord>,
}

/// The app `name` if `claims` may see it, else 404 as for a missing one (shared with
/// `/api/monitor`).
pub(super) async fn visible_app(
    st: &AppState,
    claims: &Claims,
    name: &str,
) -> Result<AppRecord, ApiError> {
    st.pipeline
        .store()
        .app(name)
        .await
        .map_err(internal)?
        .filter(|a| claims.can_see(&a.namespace))
        .ok_or_else(|| not_found("app"))
}

/// Queues a deployment of a registered app (202, with its steps, all pending, and where to
/// follow it); the daemon's deploy worker runs it. Editor or admin; audited.
async fn deploy(
    claims: Claims,
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let store = st.pipeline.store().clone();
    let (resp, detail) = match deploying(&claims, &st, &name, body).await {
        Ok(view) => {
            let detail = json!({"deployment": view.deployment.id, "skip_dns_check": view.deployment.skip_dns_check});
            let location = format!("/api/apps/{name}/deployments/{}", view.deployment.id);
            (
                (
                    StatusCode::ACCEPTED,
                    [(header::LOCATION, location)],
                    Json(view),
                )
                    .into_response(),
                detail,
            )
        }
        Err((e, detail)) => (e.into_response(), detail),
    };
    let status = resp.status();
    audit(
        &store,
        &claims,
        "POST /api/apps/{name}/deploy",
        format!("app {name}"),
        status,
        detail,
    )
    .await;
    resp
}

async fn deploying(
    claims: &Claims,
    st: &AppState,
    name: &str,
    body: Body,
) -> Result<DeploymentView, (ApiError, serde_json::Value)> {
    let plain = |e: ApiError| {
        let detail = json!({"error": e.status().as_u16()});
        (e, detail)
    };
    if !claims.can_write() {
        limits::discard(body, st.api_max_body_bytes).await;
        return Err(plain(ApiError::new(
            StatusCode::FORBIDDEN,
            "viewer tokens cannot write",
        )));
    }
    let bytes = limits::read_body(body, st.api_max_body_bytes)
        .await
        .map_err(plain)?;
    let request: DeployRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        DeployRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            plain(ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")).field("body"))
        })?
    };
    let app = visible_app(st, claims, name).await.map_err(plain)?;
    let Some(wake) = &st.deployer else {
        return Err(plain(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this daemon runs no deployments: it needs deploy.worker (AIOPS_DEPLOY_WORKER=true) and a cluster (cluster.kubeconfig or cluster.in_cluster); `aiops deploy` runs a deployment from where a kubeconfig is",
        )));
    };
    // One deployment of an app at a time: a second click must not race the first.
    let store = st.pipeline.store();
    if let Some(d) = store
        .deployments(&app.name, &app.namespace, 1)
        .await
        .map_err(|e| plain(internal(e)))?
        .into_iter()
        .find(|d| matches!(d.status.as_str(), "queued" | "running"))
    {
        return Err(plain(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "deployment {} of app {} is {}: follow it at /api/apps/{}/deployments/{}",
                d.id, d.app, d.status, d.app, d.id
            ),
        )));
    }
    let mut spec: AppSpec = serde_json::from_value(app.spec.clone())
        .map_err(|e| plain(internal(format!("stored spec of app {name}: {e}"))))?;
    spec.keep_namespace(&app.namespace);
    let id = crate::deploy::steps::queue(
        store,
        &st.deploy_settings,
        &spec,
        &claims.sub,
        request.skip_dns_check,
        None,
    )
    .await
    .map_err(|e| plain(internal(e)))?;
    wake.notify_one();
    let view = deployment_view(store, id)
        .await
        .map_err(|e| plain(internal(e)))?
        .ok_or_else(|| plain(internal(format!("deployment {id} vanished"))))?;
    Ok(view)
}

async fn deployment_view(
    store: &Store,
    id: i64,
) -> Result<Option<DeploymentView>, crate::store::Error> {
    let Some(deployment) = store.deployment(id).await? else {
        return Ok(None);
    };
    let steps = store.deployment_steps(id).await?;
    Ok(Some(DeploymentView { deployment, steps }))
}

/// The app's last 20 deployments, newest first (without their steps).
async fn list_deployments(
    claims: Claims,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let app = visible_app(&st, &claims, &name).await?;
    let items: Vec<DeploymentRecord> = st
        .pipeline
        .store()
        .deployments(&app.name, &app.namespace, 20)
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// One deployment of the app with its steps: what a portal polls while it runs.
async fn get_deployment(
    claims: Claims,
    State(st): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = visible_app(&st, &claims, &name).await?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "id: a deployment id is a number").field("id")
    })?;
    let view = deployment_view(st.pipeline.store(), id)
        .await
        .map_err(internal)?
        .filter(|v| v.deployment.app == app.name && v.deployment.namespace == app.namespace)
        .ok_or_else(|| not_found("deployment"))?;
    Ok(Json(view).into_response())
}
