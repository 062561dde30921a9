//! The `/api` caller: a [`Claims`] extractor that admits only a valid JWT (see [`crate::auth`]).
//!
//! Every refusal is 401 with `WWW-Authenticate: Bearer` and a reason that names neither the
//! token nor the secret. Without a configured secret the API is closed, not open.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
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

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1), as on the webhook.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequestParts<AppState> for Claims {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Claims, ApiError> {
        let Some(key) = &st.jwt else {
            return Err(unauthorized(
                "the API is closed: no JWT secret is configured (AIOPS_JWT_SECRET or api.jwt_secret)",
            ));
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing bearer token (Authorization: Bearer <jwt>)",
            ));
        };
        // Set by the server for every connection; absent only when the router is driven
        // without it (then no address is throttled).
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Some(ip) = ip {
            st.auth_allowed(ip)?;
        }
        let refuse = |reason: &'static str, message: String| {
            st.pipeline
                .metrics()
                .api_auth_failures
                .with_label_values(&[reason])
                .inc();
            tracing::info!(reason, "API token refused");
            let e = unauthorized(&message);
            match ip {
                Some(ip) => st.auth_failed(ip, e),
                None => e,
            }
        };
        let Some(token) = value.to_str().ok().and_then(bearer_token) else {
            return Err(refuse(
                "malformed",
                "malformed Authorization header (Bearer <jwt>)".into(),
            ));
        };
        let now = chrono::Utc::now().timestamp();
        key.verify(token, now)
            .map_err(|e| refuse(e.metric_label(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr   abc  "] {
            assert_eq!(bearer_token(v), Some("abc"), "{v}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer  "), None);
    }
}
