//! `/api/gitops/holds`: the GitOps holds (`gitops: hold`), open or released, and releasing one
//! by hand.
//!
//! Access, as `/api/repairs`: a hold belongs to the app (namespace) of the object it holds; a
//! token limited to apps sees only those holds, and another app's hold answers 404 as a missing
//! one does. Releasing needs editor or admin, takes the release task's own path
//! ([`crate::gitops::release::Releaser::release`]: undo the pause, record it, announce it once)
//! with `released_by = "api:<subject>"`, and is audited whatever its outcome.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Claims;
use super::respond::{audit, internal, not_found};
use super::{ApiError, AppState};
use crate::gitops::HoldMechanism;
use crate::gitops::release::{Error as ReleaseError, Released};
use crate::store::{self, Hold};

/// The /api/gitops routes (merged into the /api router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/gitops/holds", get(list))
        .route("/api/gitops/holds/{id}", get(one))
        .route("/api/gitops/holds/{id}/release", post(release))
}

/// A hold as the API shows it.
#[derive(Debug, Serialize)]
struct Item {
    id: i64,
    /// The repair that placed it.
    job_id: i64,
    /// `namespace/Kind/name`.
    target: String,
    namespace: String,
    /// `argocd`, `flux_kustomization`, `flux_helmrelease`.
    controller: &'static str,
    /// "Argo CD Application argocd/shop".
    owner: String,
    mechanism: HoldMechanism,
    /// How a person reads the mechanism.
    hold: &'static str,
    /// What to change in Git.
    change: String,
    /// Still in force.
    open: bool,
    created_at: Option<String>,
    expires_at: Option<String>,
    released_at: Option<String>,
    /// `expiry`, `git` or `api:<subject>`.
    released_by: Option<String>,
    /// The last failed release attempt, while the hold stays open.
    release_error: Option<String>,
    release_attempts: i64,
}

fn item(h: &Hold) -> Item {
    let n = &h.hold;
    Item {
        id: h.id,
        job_id: n.job_id,
        target: n.target.to_string(),
        namespace: n.target.namespace.clone(),
        controller: n.controller.kind(),
        owner: n.controller.to_string(),
        mechanism: n.placement.mechanism,
        hold: n.placement.mechanism.describe(),
        change: n.change.instruction(),
        open: h.released_at.is_none(),
        created_at: store::rfc3339::format(n.created_at),
        expires_at: store::rfc3339::format(n.expires_at),
        released_at: h.released_at.and_then(store::rfc3339::format),
        released_by: h.released_by.clone(),
        release_error: h.release_error.clone(),
        release_attempts: h.release_attempts,
    }
}

/// Query of the listing; an unknown parameter is refused (400), as on every /api listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Released holds too.
    all: Option<bool>,
}

/// The holds the token sees, newest first: open ones, or every one with `?all=true`.
async fn list(
    claims: Claims,
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let holds = st
        .pipeline
        .store()
        .holds_in(q.all.unwrap_or(false), claims.visible_apps(), st.max_page)
        .await
        .map_err(internal)?;
    let items: Vec<Item> = holds.iter().map(item).collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// The hold `id` if the token may see it.
async fn visible(claims: &Claims, st: &AppState, id: i64) -> Result<Hold, ApiError> {
    st.pipeline
        .store()
        .hold(id)
        .await
        .map_err(internal)?
        .filter(|h| claims.can_see(&h.hold.target.namespace))
        .ok_or_else(|| not_found("hold"))
}

async fn one(
    claims: Claims,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let hold = visible(&claims, &st, id).await?;
    Ok(Json(item(&hold)).into_response())
}

async fn release(claims: Claims, State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    let resp = match releasing(&claims, &st, id).await {
        Ok(hold) => Json(item(&hold)).into_response(),
        Err(e) => e.into_response(),
    };
    let status = resp.status();
    audit(
        st.pipeline.store(),
        &claims,
        "POST /api/gitops/holds/{id}/release",
        format!("gitops hold {id}"),
        status,
        json!({ "id": id }),
    )
    .await;
    resp
}

async fn releasing(claims: &Claims, st: &AppState, id: i64) -> Result<Hold, ApiError> {
    let hold = visible(claims, st, id).await?;
    if !claims.can_write() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "viewer tokens cannot write",
        ));
    }
    let already = || ApiError::new(StatusCode::CONFLICT, "the hold is already released");
    if hold.released_at.is_some() {
        return Err(already());
    }
    let Some(releaser) = &st.gitops else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "holds are released by `aiops serve`, which has the cluster",
        ));
    };
    let by = format!("api:{}", claims.sub);
    match releaser.release(&hold, &by, store::now_ms()).await {
        Ok(Released::Now) => {}
        Ok(Released::Already) => return Err(already()),
        Err(ReleaseError::Store(e)) => return Err(internal(e)),
        Err(ReleaseError::Cluster(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the cluster did not release the hold (it stays open and is retried): {e}"),
            ));
        }
    }
    st.pipeline
        .store()
        .hold(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found("hold"))
}
