//! The `/api` caller: a [`Claims`] extractor that admits only a valid JWT (see [`crate::auth`]).
//!
//! Every refusal is 401 with `WWW-Authenticate: Bearer` and a reason that names neither the
//! token nor the secret. Without a configured secret the API is closed, not open.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use super::{ApiError, AppState};
pub use crate::auth::{Claims, Role};

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message).header(
        "www-authenticate",
        "Bearer realm=\"aiops\", error=\"invalid_token\"",
    )
}

impl FromRequestParts<AppState> for Claims {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Claims, ApiError> {
        let Some(key) = &st.jwt else {
            return Err(unauthorized(
                "the API is closed: no JWT secret is configured (AIOPS_JWT_SECRET or api.jwt_secret)",
            ));
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthorized("missing bearer token (Authorization: Bearer <jwt>)"))?;
        let now = chrono::Utc::now().timestamp();
        key.verify(token, now).map_err(|e| {
            st.pipeline
                .metrics()
                .api_auth_failures
                .with_label_values(&[e.metric_label()])
                .inc();
            tracing::info!(reason = e.metric_label(), "API token refused");
            unauthorized(&e.to_string())
        })
    }
}
