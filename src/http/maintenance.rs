//! `/api/maintenance`: create, list and end maintenance windows.
//!
//! Access, as the rest of `/api` (a token's apps are namespaces):
//! - a window with a `namespace` is that app's: a token that sees the namespace sees the
//!   window, an editor of it may create and end it, anyone else gets 404 as for a missing one;
//! - a window without a namespace (by `app` or `rule` alone) holds alerts in every namespace,
//!   so only admins may create, see or end one;
//! - viewers read only. Every write is audited with the subject, whatever its outcome.
//!
//! Windows of the settings file are listed (`source: settings`, no id) but cannot be ended
//! here: they are configuration, changed where they are written.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::auth::Claims;
use super::respond::{audit, internal, not_found, unreadable};
use super::{ApiError, AppState};
use crate::maintenance::{Key, Occurrence, Schedule, Window, WindowSpec};
use crate::store;

/// The /api/maintenance routes (merged into the /api router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/maintenance", get(list).post(create))
        .route("/api/maintenance/{id}/end", post(end))
}

/// One occurrence, RFC 3339 UTC.
#[derive(Debug, Serialize)]
struct Span {
    start: Option<String>,
    end: Option<String>,
}

impl From<Occurrence> for Span {
    fn from(o: Occurrence) -> Span {
        Span {
            start: store::rfc3339::format(o.start),
            end: store::rfc3339::format(o.end),
        }
    }
}

/// A window as the API shows it.
#[derive(Debug, Serialize)]
struct Item {
    /// Row id; none for the settings file's windows.
    id: Option<i64>,
    /// `api` or `settings`.
    source: &'static str,
    /// `once` or `recurring`.
    kind: &'static str,
    /// Open now.
    active: bool,
    /// The occurrence open now.
    current: Option<Span>,
    /// The next occurrence to open.
    next: Option<Span>,
    /// When it was created (API windows).
    created_at: Option<String>,
    /// When it was ended early (API windows).
    ended_at: Option<String>,
    /// The window as written (`created_by` filled).
    #[serde(flatten)]
    spec: WindowSpec,
}

fn item(w: &Window, now: i64) -> Item {
    let current = w.active_at(now);
    Item {
        id: match w.key {
            Key::Stored(id) => Some(id),
            Key::Settings(_) => None,
        },
        source: match w.key {
            Key::Stored(_) => "api",
            Key::Settings(_) => "settings",
        },
        kind: match w.schedule {
            Schedule::Once(_) => "once",
            Schedule::Recurring { .. } => "recurring",
        },
        active: current.is_some(),
        next: w
            .next_after(current.map_or(now, |c| c.end - 1))
            .map(Span::from),
        current: current.map(Span::from),
        created_at: w.created_at.and_then(store::rfc3339::format),
        ended_at: w.ended_at.and_then(store::rfc3339::format),
        spec: w.spec.clone(),
    }
}

/// Whether the token may see (and, with write rights, end) the window.
fn visible(claims: &Claims, w: &Window) -> bool {
    match (&w.scope.namespace, claims.visible_apps()) {
        (_, None) => true,
        (Some(ns), Some(_)) => claims.can_see(ns),
        (None, Some(_)) => false,
    }
}

/// The windows open now or later that the token sees, the settings file's first.
async fn list(claims: Claims, State(st): State<AppState>) -> Result<Response, ApiError> {
    let now = store::now_ms();
    let items: Vec<Item> = visible_windows(&claims, &st)
        .await
        .map_err(internal)?
        .iter()
        .map(|w| item(w, now))
        .filter(|i| i.active || i.next.is_some())
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// Every window the token sees (the settings file's first, then the stored ones, recently
/// ended ones among them), fresh from the store: a window another replica created shows at
/// once, and this replica's guard picks it up too.
pub(crate) async fn visible_windows(
    claims: &Claims,
    st: &AppState,
) -> Result<Vec<Window>, store::Error> {
    let windows = st.pipeline.maintenance();
    windows.refresh(st.pipeline.store()).await?;
    Ok(windows
        .all()
        .into_iter()
        .filter(|w| visible(claims, w))
        .collect())
}

type Failure = (ApiError, serde_json::Value);

async fn create(
    claims: Claims,
    State(st): State<AppState>,
    body: Result<Json<WindowSpec>, JsonRejection>,
) -> Response {
    let spec = match body {
        Ok(Json(spec)) => spec,
        Err(e) => {
            let err = unreadable(&e);
            let status = err.status();
            let detail = json!({ "error": "bad request" });
            let action = "POST /api/maintenance";
            audit(
                st.pipeline.store(),
                &claims,
                action,
                "maintenance".into(),
                status,
                detail,
            )
            .await;
            return err.into_response();
        }
    };
    match create_window(&claims, &st, spec, "POST /api/maintenance").await {
        Ok(w) => (StatusCode::CREATED, Json(item(&w, store::now_ms()))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Creates a window for `claims` (the API's and the console's one path): checks access and the
/// spec, stores it, reloads this replica's windows, and audits the write as `action` whatever
/// its outcome.
pub(crate) async fn create_window(
    claims: &Claims,
    st: &AppState,
    spec: WindowSpec,
    action: &str,
) -> Result<Window, ApiError> {
    let (result, resource, detail) = match creation(claims, st, spec).await {
        Ok(w) => {
            let resource = format!("maintenance {}", w.label());
            let detail = audit_detail(&w.spec);
            (Ok(w), resource, detail)
        }
        Err((e, detail)) => (Err(e), "maintenance".to_string(), detail),
    };
    let status = match &result {
        Ok(_) => StatusCode::CREATED,
        Err(e) => e.status(),
    };
    audit(
        st.pipeline.store(),
        claims,
        action,
        resource,
        status,
        detail,
    )
    .await;
    result
}

/// What the audit log keeps of a window.
fn audit_detail(spec: &WindowSpec) -> serde_json::Value {
    json!(spec)
}

async fn creation(claims: &Claims, st: &AppState, mut spec: WindowSpec) -> Result<Window, Failure> {
    let detail = audit_detail(&spec);
    let bad = |e: String, field: &str| {
        (
            ApiError::new(StatusCode::BAD_REQUEST, e).field(field),
            detail.clone(),
        )
    };
    if !claims.can_write() {
        return Err((
            ApiError::new(StatusCode::FORBIDDEN, "viewer tokens cannot write"),
            detail,
        ));
    }
    if spec.created_by.is_some() {
        return Err(bad(
            "created_by is the token's subject; leave it out".into(),
            "created_by",
        ));
    }
    match (&spec.namespace, claims.visible_apps()) {
        (None, Some(_)) => {
            return Err((
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "only admins may create a window without a namespace: it would hold alerts of every app",
                )
                .field("namespace"),
                detail,
            ));
        }
        (Some(ns), Some(_)) if !claims.can_see(ns) => return Err((not_found("app"), detail)),
        _ => {}
    }
    spec.created_by = Some(claims.sub.clone());
    // The id is not known yet: checked under a placeholder key, stored, then keyed by its row.
    let window = Window::compile(Key::Stored(0), &spec).map_err(|e| bad(e.to_string(), "body"))?;
    let now = store::now_ms();
    if let Schedule::Once(o) = window.schedule
        && o.end <= now
    {
        return Err(bad(
            "end is in the past: the window would never be open".into(),
            "end",
        ));
    }
    let store = st.pipeline.store();
    let row = crate::maintenance::stored_of(&window, &claims.sub, now);
    let row = store
        .insert_maintenance_window(&row)
        .await
        .map_err(|e| (internal(e), detail.clone()))?;
    refresh(st).await;
    let mut window = window;
    window.key = Key::Stored(row.id);
    window.created_at = Some(row.created_at);
    Ok(window)
}

/// This replica's guard sees the change at once (others within `maintenance_refresh`).
async fn refresh(st: &AppState) {
    if let Err(e) = st.pipeline.maintenance().refresh(st.pipeline.store()).await {
        tracing::warn!(error = %e, "maintenance windows not reloaded after a change; the next refresh picks it up");
    }
}

async fn end(claims: Claims, State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    match end_window(&claims, &st, id, "POST /api/maintenance/{id}/end").await {
        Ok(w) => Json(item(&w, store::now_ms())).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Ends window `id` early for `claims` (the API's and the console's one path), audited as
/// `action` whatever the outcome.
pub(crate) async fn end_window(
    claims: &Claims,
    st: &AppState,
    id: i64,
    action: &str,
) -> Result<Window, ApiError> {
    let (result, detail) = match ending(claims, st, id).await {
        Ok(w) => {
            let detail = audit_detail(&w.spec);
            (Ok(w), detail)
        }
        Err((e, detail)) => (Err(e), detail),
    };
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    };
    let resource = format!("maintenance {id}");
    audit(
        st.pipeline.store(),
        claims,
        action,
        resource,
        status,
        detail,
    )
    .await;
    result
}

async fn ending(claims: &Claims, st: &AppState, id: i64) -> Result<Window, Failure> {
    let detail = json!({ "id": id });
    let store = st.pipeline.store();
    let row = store
        .maintenance_window(id)
        .await
        .map_err(|e| (internal(e), detail.clone()))?;
    let window = row.as_ref().map(Window::from_stored).transpose();
    let window = match window {
        Ok(Some(w)) if visible(claims, &w) => w,
        // A row that no longer checks is shown as missing; the log says why.
        _ => return Err((not_found("maintenance window"), detail)),
    };
    let detail = audit_detail(&window.spec);
    if !claims.can_write() {
        return Err((
            ApiError::new(StatusCode::FORBIDDEN, "viewer tokens cannot write"),
            detail,
        ));
    }
    let now = store::now_ms();
    let ended = store
        .end_maintenance_window(id, now, &claims.sub)
        .await
        .map_err(|e| (internal(e), detail.clone()))?;
    if !ended {
        return Err((
            ApiError::new(StatusCode::CONFLICT, "the window has already ended"),
            detail,
        ));
    }
    refresh(st).await;
    let mut window = window;
    window.ended_at = Some(now);
    Ok(window)
}
