//! `POST /webhook/alertmanager`: authenticate, bound, parse, record, answer. Alertmanager's
//! `webhook_config` and Grafana's webhook contact point both post here (see `alert`).
//!
//! Checks run cheapest-first and before the body is read where possible, so an unauthenticated
//! or oversized request costs almost nothing. The response is sent only after the pipeline has
//! committed: a 2xx means the alerts are in the store.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::alert::Payload;
use crate::pipeline;

/// The webhook handler.
pub async fn alertmanager(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let resp = match handle(&st, peer, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(status = e.status().as_u16(), body = %e.body, "webhook not accepted; Alertmanager will retry");
            } else {
                tracing::info!(status = e.status().as_u16(), body = %e.body, %peer, "webhook rejected");
            }
            e.into_response()
        }
    };
    let m = st.pipeline.metrics();
    m.webhook_duration.observe(started.elapsed().as_secs_f64());
    m.webhook_requests
        .with_label_values(&[resp.status().as_str()])
        .inc();
    resp
}

async fn handle(
    st: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(st, peer, headers)?;
    // After auth: an unauthenticated flood must not use up Alertmanager's allowance.
    if let Some(limiter) = &st.limiter
        && limiter.check_key(&peer.ip()).is_err()
    {
        // 503, not 429: Alertmanager retries 5xx and drops 4xx, and a rate limit must not lose alerts.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "intake rate limit exceeded for this client",
        )
        .header("retry-after", "1"));
    }

    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (an Alertmanager webhook)",
        ));
    }
    let limit = st.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body larger than {limit} bytes (intake.max_body_bytes); lower max_alerts in Alertmanager's webhook_config or raise the limit"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared
        && n > limit
    {
        // Read (and discard) a moderately oversized body so the client sees the 413 instead of
        // a connection reset mid-upload; anything larger is cut off unread.
        if n <= limit.saturating_mul(4) {
            let _ = axum::body::to_bytes(body, n).await;
        }
        return Err(too_large());
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return Err(too_large()),
        Err(e) if super::server::is_body_timeout(&e) => {
            return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, e.to_string()));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            ));
        }
    };
    let payload = Payload::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.message.clone()).field(e.field))?;
    // Which sender, so a Grafana contact point being set up can be told from Alertmanager.
    tracing::debug!(
        sender = payload.sender().map_or("unknown", |s| s.as_str()),
        alerts = payload.alerts.len(),
        "webhook parsed"
    );

    match st.pipeline.ingest(&payload).await {
        Ok(report) if report.rejected.is_empty() => {
            Ok((StatusCode::OK, Json(report)).into_response())
        }
        // 400, not 503: retrying cannot make the value storable, and Alertmanager does not retry
        // 4xx. The other alerts are recorded and acted on; the body says what to fix.
        Ok(report) => {
            let mut body = serde_json::to_value(&report).expect("a report serializes");
            body["error"] = serde_json::json!(format!(
                "{} of {} alerts rejected (see `rejected`); the others were recorded",
                report.rejected.len(),
                payload.alerts.len()
            ));
            Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
        }
        Err(pipeline::Error::QueueFull { capacity }) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "job queue full ({capacity} jobs queued or waiting); nothing recorded, retry later"
            ),
        )
        .header("retry-after", "5")),
        // The writer logged the batch's error once; the label says which kind.
        Err(pipeline::Error::Unavailable(kind)) => {
            tracing::debug!(kind, "webhook not recorded; answering 503");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable; nothing recorded, retry later",
            )
            .header("retry-after", "5"))
        }
        Err(pipeline::Error::Store(e)) => {
            tracing::error!(error = %e, kind = e.metric_label(), "store unavailable; answering 503");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable; nothing recorded, retry later",
            )
            .header("retry-after", "5"))
        }
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Bearer token, or basic auth with the token as password (Alertmanager's http_config offers
/// both). Without a configured token only loopback peers are served; `serve` refuses to listen
/// elsewhere without one.
pub(super) fn authorize(
    st: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let unauthorized = |msg: &str| {
        ApiError::new(StatusCode::UNAUTHORIZED, msg)
            .header("www-authenticate", "Bearer realm=\"aiops\"")
    };
    let Some(token) = &st.token else {
        return if peer.ip().is_loopback() {
            Ok(())
        } else {
            Err(unauthorized(
                "no webhook token is configured, so only loopback clients are served",
            ))
        };
    };
    // Before the credentials are looked at: an address out of failed-auth budget learns nothing.
    st.auth_allowed(peer.ip())?;
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing Authorization header (Bearer token or basic auth)",
        ));
    };
    let presented = value.to_str().ok().and_then(presented_secret);
    if presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.expose().as_bytes()))) {
        Ok(())
    } else {
        Err(st.auth_failed(peer.ip(), unauthorized("invalid credentials")))
    }
}

fn presented_secret(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::presented_secret;

    #[test]
    fn bearer_and_basic_credentials_are_both_understood() {
        assert_eq!(presented_secret("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(presented_secret("bearer  abc ").as_deref(), Some("abc"));
        // "alertmanager:s3cret"
        assert_eq!(
            presented_secret("Basic YWxlcnRtYW5hZ2VyOnMzY3JldA==").as_deref(),
            Some("s3cret")
        );
        assert_eq!(presented_secret("Basic !!!"), None);
        assert_eq!(presented_secret("Token abc"), None);
        assert_eq!(presented_secret("abc"), None);
    }
}
