//! TODO(auth helper): sign-in at /ui/login, sign-out at /ui/logout, and the rate limit of
//! failed sign-ins. See src/ui/mod.rs for the contract.

use axum::Router;

use crate::http::AppState;

/// Templates of this module.
pub(super) const TEMPLATES: &[(&str, &str)] = &[];

/// Words of this module: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = &[];

/// Failed sign-ins per user name (the per-address limit is `http.auth_failures_per_minute`).
#[derive(Debug, Default)]
pub(crate) struct Limiter {}

/// Routes of this module.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
