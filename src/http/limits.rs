//! Request limits of the `/api` surface: body size and deadline, structure of YAML/JSON bodies
//! before any parser sees them, control characters in queries and paths, and JSON for every
//! error answered under `/api` (axum's own rejections included).

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::server::is_body_timeout;

/// Reads a whole request body of at most `limit` bytes: 413 beyond it, 408 when it does not
/// arrive within `http.body_read_timeout`, 400 when the client breaks off.
///
/// A body up to four times the limit is read to its end and discarded, so the client (still
/// sending) gets its 413 rather than a reset connection; anything larger is cut off.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut kept = Vec::new();
    let seen = consume(body, limit.saturating_mul(4), |data| {
        if kept.len() + data.len() <= limit {
            kept.extend_from_slice(data);
        }
    })
    .await?;
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {limit} bytes (api.max_body_bytes)"),
        ));
    }
    Ok(Bytes::from(kept))
}

/// Reads and discards a body the answer does not need (up to `limit` bytes, within the body
/// deadline), so a client still sending it reads the answer instead of a reset connection.
pub async fn discard(body: Body, limit: usize) {
    let _ = consume(body, limit, |_| {}).await;
}

/// Feeds the body's data to `keep` until its end or until more than `stop_after` bytes were
/// seen; returns the bytes seen.
async fn consume(
    mut body: Body,
    stop_after: usize,
    mut keep: impl FnMut(&[u8]),
) -> Result<usize, ApiError> {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if is_body_timeout(&e) {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, e.to_string())
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            }
        })?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            keep(&data);
            if seen > stop_after {
                break;
            }
        }
    }
    Ok(seen)
}

/// Refuses a body whose structure would make the YAML parser slow, before it sees it.
///
/// libyaml (under serde_yaml) spends time proportional to the flow-collection depth on every
/// token, so `[[[[…` costs time quadratic in its depth (200,000 levels: minutes of CPU). A body
/// whose first character is `{` must be JSON, and is measured exactly with serde_json (linear,
/// its own recursion limit is 128): at most `max_depth` levels. Any other body is YAML, where
/// quoting rules make an exact count as complex as the parser, so the bound is simpler and
/// safe: at most `max_depth` `[` or `{` characters in the whole text, wherever they are (block
/// style `- item` lists are not limited). Block nesting by indentation costs linear time and is
/// bounded by the body size and the deserializer's recursion limit.
pub fn check_structure(text: &str, max_depth: usize) -> Result<(), String> {
    let start = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if start.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("a body starting with {{ must be JSON: {e}"))?;
        let depth = json_depth(&v);
        if depth > max_depth {
            return Err(format!(
                "JSON nested {depth} levels deep; at most {max_depth} (api.max_depth)"
            ));
        }
        return Ok(());
    }
    let flow = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if flow > max_depth {
        return Err(format!(
            "YAML with {flow} '[' or '{{' characters; at most {max_depth} (api.max_depth): write lists in block style (- item) or send JSON"
        ));
    }
    Ok(())
}

fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Middleware: a control character (NUL among them, which PostgreSQL cannot store) in a query
/// parameter or a path segment is a 400 naming the parameter, never a store error.
pub async fn reject_control_chars(req: Request, next: Next) -> Response {
    if let Err(e) = check_uri(req.uri()) {
        return e.into_response();
    }
    next.run(req).await
}

fn check_uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    if uri.query().is_some() {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        for (name, value) in pairs {
            if name.chars().chain(value.chars()).any(char::is_control) {
                let shown: String = name.chars().filter(|c| !c.is_control()).collect();
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter {shown:?} contains a control character"),
                )
                .field(shown));
            }
        }
    }
    if encoded_control(uri.path()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the path contains an encoded control character",
        )
        .field("path"));
    }
    Ok(())
}

/// Whether `path` holds a percent-encoded control byte (`%00`–`%1F`, `%7F`); raw ones never
/// pass hyper's request-line parser.
fn encoded_control(path: &str) -> bool {
    let b = path.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some_and(|v| v < 0x20 || v == 0x7f)
    })
}

/// Response middleware: an error under `/api` that is not JSON yet (axum's query, path, body
/// and method rejections answer text/plain or nothing) becomes `{"error": "..."}` with the same
/// status and headers.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Rejection texts are one line; anything longer is cut, not buffered.
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        "method not allowed on this route (GET /api/openapi.json lists them)".to_string()
    } else {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": message }).to_string();
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_or_bracket_heavy_bodies_are_refused_before_parsing() {
        let deep_json = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        let err = check_structure(&deep_json, 32).unwrap_err();
        assert!(err.contains("41 levels"), "{err}");
        // serde_json's own recursion limit stops absurd depths in linear time.
        let absurd = format!("{{\"a\":{}", "[".repeat(200_000));
        let started = std::time::Instant::now();
        assert!(check_structure(&absurd, 32).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let yaml = format!("name: x\nenv: {}", "[".repeat(200_000));
        let err = check_structure(&yaml, 32).unwrap_err();
        assert!(err.contains("200000"), "{err}");
        // Brackets inside strings count too: the YAML bound does not guess at quoting.
        assert!(check_structure(&format!("a: \"{}\"", "[".repeat(33)), 32).is_err());
        assert!(
            check_structure("{name: x}", 32)
                .unwrap_err()
                .contains("must be JSON")
        );
    }

    #[test]
    fn block_nesting_up_to_the_body_limit_fails_to_parse_in_linear_time() {
        // What the structure check lets through: nesting by indentation or by `- `/`? `
        // indicators, as much as the default 256 KiB body holds. The parser's cost is linear in
        // these (the quadratic case is flow nesting), and the deserializer stops at its
        // recursion limit.
        let limit = crate::config::ApiSettings::DEFAULT_MAX_BODY_BYTES;
        let mut indented = String::new();
        let mut depth = 0;
        while indented.len() + depth + 3 < limit {
            indented.push_str(&format!("{}a:\n", " ".repeat(depth)));
            depth += 1;
        }
        for (what, body) in [
            ("indentation", indented),
            ("compact sequences", "- ".repeat(limit / 2)),
            ("explicit keys", "? ".repeat(limit / 2)),
        ] {
            assert!(body.len() <= limit);
            check_structure(&body, 32).unwrap();
            let started = std::time::Instant::now();
            let parsed = crate::deploy::AppSpec::parse(&body, "test");
            let took = started.elapsed();
            assert!(parsed.is_err(), "{what}");
            eprintln!("{what}: {took:?}");
            assert!(took < std::time::Duration::from_secs(5), "{what}: {took:?}");
        }
    }

    #[test]
    fn the_repositorys_app_specs_pass_the_structure_check() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/deploy");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.to_string_lossy().ends_with(".app.yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                check_structure(&text, 32).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let json = serde_json::to_string(
                    &serde_yaml::from_str::<serde_json::Value>(&text).unwrap(),
                )
                .unwrap();
                check_structure(&json, 32).unwrap();
                n += 1;
            }
        }
        assert!(n >= 5, "found {n} specs");
    }

    #[test]
    fn control_characters_in_queries_and_paths_are_found() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        let e = check_uri(&uri("/api/alerts?alertname=a%00b")).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(check_uri(&uri("/api/alerts?alertname=a%0Ab")).is_err());
        assert!(check_uri(&uri("/api/apps/a%00/manifests")).is_err());
        assert!(check_uri(&uri("/api/alerts?alertname=Kube%20Down&since=7d")).is_ok());
        assert!(check_uri(&uri("/api/apps/shop%2Dx/manifests")).is_ok());
    }
}
