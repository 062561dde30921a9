//! Operational endpoints: `/-/healthy`, `/-/ready`, `/-/reload`, `/metrics`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};

/// Liveness: the process answers.
pub async fn healthy() -> &'static str {
    "OK\n"
}

/// Readiness: the store answers and rules are loaded.
pub async fn ready(State(st): State<AppState>) -> Response {
    let defs = st.pipeline.definitions();
    match st.pipeline.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "rules": defs.rules.len(), "playbooks": defs.playbooks.len(), "cluster": st.preflight.snapshot()})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store unreachable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unreachable").into_response()
        }
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.pipeline.metrics().render(),
    )
        .into_response()
}

/// Reloads rules and playbooks; an invalid set is refused and the running one kept.
/// Protected by the webhook token when one is configured.
pub async fn reload(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::webhook::authorize(&st, peer, &headers)?;
    let pipeline = st.pipeline.clone();
    let (rules_dir, playbooks_dir) = (st.rules_dir.clone(), st.playbooks_dir.clone());
    let result = tokio::task::spawn_blocking(move || pipeline.reload(&rules_dir, &playbooks_dir))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload task failed: {e}"),
            )
        })?;
    match result {
        Ok((rules, playbooks)) => {
            Ok((StatusCode::OK, Json(json!({"status": "reloaded", "rules": rules, "playbooks": playbooks}))).into_response())
        }
        Err(problems) => Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "reload rejected; the running rules and playbooks are unchanged", "problems": problems})),
        )
            .into_response()),
    }
}
