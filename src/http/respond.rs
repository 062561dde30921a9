//! What the `/api` handlers of every resource answer alike: the store failing, a missing item,
//! and the audit record of a write. Shared by `api` and `apps`, so neither imports the other.

use axum::http::StatusCode;

use super::ApiError;
use super::auth::Claims;
use crate::store::{self, AuditEntry};

/// The store failed: logged with its cause, answered 503 without it (a retry can fix it, and
/// the cause may name internals).
pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "API request failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store did not answer; retry",
    )
}

/// `{what} not found`, 404: also what another app's item answers, so it is not disclosed.
pub(super) fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
}

/// A JSON body that could not be read or parsed, for the field `body`: 408 when it came too
/// slowly (`http.body_read_timeout`), else axum's status (400, 413, 415, 422) and words.
pub(super) fn unreadable(e: &axum::extract::rejection::JsonRejection) -> ApiError {
    let status = if super::server::is_body_timeout(e) {
        StatusCode::REQUEST_TIMEOUT
    } else {
        e.status()
    };
    ApiError::new(status, e.body_text()).field("body")
}

/// Records an API write. A failure to audit is logged loudly; the write itself already
/// happened and its answer stands.
pub(crate) async fn audit(
    store: &store::Store,
    claims: &Claims,
    action: &str,
    resource: String,
    status: StatusCode,
    detail: serde_json::Value,
) {
    let entry = AuditEntry {
        at: store::now_ms(),
        subject: claims.sub.clone(),
        role: claims.role.as_str().to_string(),
        action: action.to_string(),
        resource,
        status: i64::from(status.as_u16()),
        detail: detail.to_string(),
    };
    if let Err(e) = store.audit(&entry).await {
        tracing::error!(error = %e, subject = %claims.sub, action, "could not write the audit log");
    }
}
