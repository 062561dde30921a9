//! The console's stylesheet and script, compiled into the binary (no CDN, no build step).
//!
//! `console.css` is the base stylesheet followed by each page group's own rules; `console.js`
//! is progressive enhancement only: every page works without it.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::http::AppState;

static CSS: LazyLock<String> = LazyLock::new(|| {
    [
        include_str!("static/console.css"),
        super::login::CSS,
        super::alerts::CSS,
        super::repairs::CSS,
        super::catalog::CSS,
        super::inbox::CSS,
        super::apps::CSS,
    ]
    .join("\n")
});

const JS: &str = include_str!("static/console.js");

/// `/ui/static/console.css` and `/ui/static/console.js`. An hour of caching: they change only
/// with the binary.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/ui/static/console.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    CSS.as_str(),
                )
                    .into_response()
            }),
        )
        .route(
            "/ui/static/console.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    JS,
                )
                    .into_response()
            }),
        )
}
