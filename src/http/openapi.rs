//! The OpenAPI 3.1 description of `/api`, served at `/api/openapi.json` without auth.
//!
//! Kept as a JSON file beside the handlers; tests/api.rs checks that it is valid JSON and that
//! every path and method it names answers through the router (and nothing else under /api does).

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");
