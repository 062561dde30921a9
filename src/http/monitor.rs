//! `/api/monitor/{app}`: an app's metrics from Prometheus, for tokens that may see the app.
//!
//! `?query=` runs the caller's PromQL with the app's namespace matcher on every selector
//! ([`crate::monitor::enforce`]); `?panel=` runs one of the canned panels
//! ([`crate::monitor::Panel`]); `start`, `end` and `step` make either a range query.
//! `/api/monitor/{app}/panels` lists the panels with their queries. Same visibility as
//! `/api/apps`: another app answers 404 exactly as a missing one. Reading needs no write role.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::apps::visible_app;
use super::auth::Claims;
use super::{ApiError, AppState};
use crate::monitor::{self, Panel, QueryData, When};

/// The /api/monitor routes (merged into the /api router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/monitor/{app}", get(query))
        .route("/api/monitor/{app}/panels", get(panels))
}

/// Query of `/api/monitor/{app}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorQuery {
    /// PromQL (give this or `panel`).
    query: Option<String>,
    /// A canned panel (give this or `query`).
    panel: Option<String>,
    /// Evaluation time of an instant query.
    time: Option<String>,
    /// Range start.
    start: Option<String>,
    /// Range end.
    end: Option<String>,
    /// Range step.
    step: Option<String>,
}

/// One query's answer.
#[derive(Serialize)]
struct Answer {
    /// `A`, `B`, … as the dashboard's targets.
    ref_id: String,
    /// The query as sent to Prometheus (with the namespace matcher).
    query: String,
    /// Prometheus's `resultType` and `result`.
    #[serde(flatten)]
    data: QueryData,
}

fn monitor_error(e: monitor::Error) -> ApiError {
    let status = match &e {
        e if e.is_callers() => StatusCode::BAD_REQUEST,
        monitor::Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    if !e.is_callers() {
        tracing::warn!(error = %e, "a monitoring query failed");
    }
    let field = match &e {
        monitor::Error::Confine(_) | monitor::Error::Refused(_) => Some("query"),
        _ => None,
    };
    let err = ApiError::new(status, e.to_string());
    match field {
        Some(f) => err.field(f),
        None => err,
    }
}

async fn query(
    claims: Claims,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MonitorQuery>,
) -> Result<Response, ApiError> {
    let app = visible_app(&st, &claims, &name).await?;
    let Some(prometheus) = &st.prometheus else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Prometheus is configured (monitoring.prometheus_url / AIOPS_PROMETHEUS_URL)",
        ));
    };
    let (panel, queries) = match (q.query, q.panel.as_deref()) {
        (Some(query), None) => (None, vec![query]),
        (None, Some(id)) => {
            let panel = Panel::parse(id).ok_or_else(|| {
                let all: Vec<_> = Panel::ALL.iter().map(|p| p.id()).collect();
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown panel {id:?} (one of {})", all.join(", ")),
                )
                .field("panel")
            })?;
            (Some(panel), panel.queries(&app.name, &app.namespace))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give query (PromQL) or panel (GET …/panels lists them), one of the two",
            )
            .field("query"));
        }
    };
    let when = When::from_params(q.time, q.start, q.end, q.step).map_err(monitor_error)?;
    let mut results = Vec::with_capacity(queries.len());
    for (i, promql) in queries.iter().enumerate() {
        let (sent, data) = prometheus
            .query(&app.namespace, promql, &when)
            .await
            .map_err(monitor_error)?;
        results.push(Answer {
            ref_id: char::from(b'A' + i as u8).to_string(),
            query: sent,
            data,
        });
    }
    Ok(Json(serde_json::json!({
        "app": app.name,
        "namespace": app.namespace,
        "panel": panel.map(Panel::id),
        "results": results,
    }))
    .into_response())
}

async fn panels(
    claims: Claims,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let app = visible_app(&st, &claims, &name).await?;
    let items: Vec<_> = Panel::ALL
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.id(),
                "title": p.title(),
                "unit": p.unit(),
                "queries": p.queries(&app.name, &app.namespace),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "app": app.name, "items": items })).into_response())
}
