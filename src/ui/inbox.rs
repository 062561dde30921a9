//! TODO(inbox helper): this page group. See src/ui/mod.rs for the contract.

use axum::Router;

use crate::http::AppState;

/// Templates of this page group.
pub(super) const TEMPLATES: &[(&str, &str)] = &[];

/// Words of this page group: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = &[];

/// CSS of this page group, appended to /ui/static/console.css.
pub(super) const CSS: &str = "";

/// Routes of this page group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
