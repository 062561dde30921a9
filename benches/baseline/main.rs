//! The load-test baseline (issue 2): a bare axum + serde_json server that only parses the
//! Alertmanager webhook body and answers.
//!
//! The intake's throughput target is stated as a ratio to this server rather than as an absolute
//! number, because absolute requests/second depend on the machine (core count, other load) while
//! the ratio isolates what the daemon adds on top of HTTP + JSON parsing: auth, validation,
//! dedup, the store write and the pipeline. `benches/load.sh` runs wrk against both, one after
//! the other, with identical settings.
//!
//! Kept deliberately as close to the daemon's stack as possible (same axum features, the same
//! default multi-threaded tokio runtime, the body read as bytes then parsed from a slice) so the
//! ratio measures the daemon's work, not a difference in plumbing.
//!
//! Run: `cargo run --release --example baseline` (listens on `BASELINE_LISTEN`, default
//! 127.0.0.1:9096).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// Address used when `BASELINE_LISTEN` is unset; next to the daemon's default 9095.
const DEFAULT_LISTEN: &str = "127.0.0.1:9096";

/// Parses the body as untyped JSON and counts the alerts: the minimum any webhook receiver does.
///
/// An untyped `Value` (rather than the daemon's typed model) keeps this a pure HTTP + JSON-parse
/// reference; counting `alerts` makes sure the parsed document is actually used.
async fn webhook(body: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(doc) => {
            let accepted = doc
                .get("alerts")
                .and_then(|a| a.as_array())
                .map_or(0, Vec::len);
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "accepted": accepted })),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("BASELINE_LISTEN")
        .ok()
        .filter(|v| !v.is_empty())
        .as_deref()
        .unwrap_or(DEFAULT_LISTEN)
        .parse()?;
    // Built the way the daemon's main.rs builds its runtime: default worker count, all drivers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        // Print the bound address (not the requested one) so port 0 works for callers.
        println!("listening on {}", listener.local_addr()?);
        let app = Router::new().route("/webhook/alertmanager", post(webhook));
        axum::serve(listener, app).await?;
        Ok(())
    })
}
