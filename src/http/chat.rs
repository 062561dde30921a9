//! The chat platforms' callbacks, outside `/api` (they carry no token of ours; each request is
//! authenticated by its platform's signature, see `crate::chat::signature`):
//!
//! - `POST /chat/slack/interactions`: Slack's interactivity request URL;
//! - `POST /chat/line/webhook`: LINE's webhook URL.
//!
//! Each is 404 unless a channel of its type has the secret to verify it with. A request that
//! fails verification is a 401 and counts against the address's failed-authentication budget
//! (`http.auth_failures_per_minute`), checked before the body is read; a verified request is
//! answered 200 once the click is decided, and the chat is updated after the answer.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{ApiError, AppState};
use crate::chat;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat/slack/interactions", post(slack))
        .route("/chat/line/webhook", post(line))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The answer to a request the receiver refused or failed.
fn refused(st: &AppState, peer: SocketAddr, platform: &str, e: &chat::Error) -> Response {
    if e.is_unauthenticated() {
        tracing::warn!(%peer, platform, error = %e, "chat callback refused");
        let refusal = ApiError::new(StatusCode::UNAUTHORIZED, e.to_string());
        return st.auth_failed(peer.ip(), refusal).into_response();
    }
    match e {
        chat::Error::Approval(_) => {
            tracing::error!(platform, error = %e, "chat callback failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
                .into_response()
        }
        _ => {
            tracing::info!(%peer, platform, error = %e, "chat callback not understood");
            ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}

fn not_configured(what: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no {what} is configured for approvals"),
    )
    .into_response()
}

async fn slack(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(receiver) = st.chat.slack.clone() else {
        return not_configured("Slack channel with a signing_secret");
    };
    if let Err(e) = st.auth_allowed(peer.ip()) {
        return e.into_response();
    }
    let now = chrono::Utc::now().timestamp();
    let handled = receiver
        .handle(
            header(&headers, "x-slack-request-timestamp"),
            header(&headers, "x-slack-signature"),
            &body,
            now,
        )
        .await;
    match handled {
        // Slack wants an empty 200; the message is updated through response_url.
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => refused(&st, peer, "slack", &e),
    }
}

async fn line(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(receiver) = st.chat.line.clone() else {
        return not_configured("LINE channel with a channel_secret");
    };
    if let Err(e) = st.auth_allowed(peer.ip()) {
        return e.into_response();
    }
    match receiver
        .handle(header(&headers, "x-line-signature"), &body)
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => refused(&st, peer, "line", &e),
    }
}
