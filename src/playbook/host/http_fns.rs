//! `http_get`: a bounded GET to a host in `playbook.http_allow`, redirects not followed, and the
//! redaction of URLs in steps and logs.

use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use super::args::duration_arg;
use super::context::ctx;
use super::errors::runtime_error;

pub(super) fn http_get(url: &str, timeout: Duration) -> Result<Map, Box<EvalAltResult>> {
    let c = ctx()?;
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| runtime_error(format!("http_get: bad URL {url:?}: {e}")))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let host_port = parsed.port().map(|p| format!("{host}:{p}"));
    let allowed = c
        .settings
        .http_allow
        .iter()
        .any(|a| *a == host || Some(a) == host_port.as_ref());
    if !allowed {
        return Err(runtime_error(format!(
            "http_get: host {host} is not in playbook.http_allow"
        )));
    }
    let limit = timeout.min(c.settings.call_timeout).min(c.remaining());
    let client = c.http.clone();
    let shown = redact(&parsed);
    let res = c.handle.block_on(async move {
        let mut resp = client.get(parsed).timeout(limit).send().await?;
        let status = resp.status().as_u16();
        // Redirects are not followed (see http_client): say where it pointed, by host only
        // (the path and query may hold a token).
        let moved = resp
            .status()
            .is_redirection()
            .then(|| {
                resp.headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| reqwest::Url::parse(l).ok())
                    .and_then(|u| {
                        let host = u.host_str()?.to_string();
                        Some(u.port().map_or(host.clone(), |p| format!("{host}:{p}")))
                    })
            })
            .flatten();
        // Read at most 64 KiB: a health endpoint has no business sending more.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            let room = MAX_HTTP_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_HTTP_BODY {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, moved, String::from_utf8_lossy(&body).into_owned()))
    });
    let mut m = Map::new();
    match res {
        Ok((status, moved, body)) => {
            let note = match moved {
                Some(h) => format!(
                    " (redirect to {h} not followed: playbooks reach only playbook.http_allow, directly)"
                ),
                None if (300..400).contains(&status) => " (redirect not followed)".to_string(),
                None => String::new(),
            };
            c.record("http_get", format!("GET {shown} -> {status}{note}"));
            m.insert("status".into(), Dynamic::from_int(i64::from(status)));
            m.insert("ok".into(), (200..300).contains(&status).into());
            m.insert("body".into(), body.into());
        }
        Err(e) => {
            let e = e.without_url().to_string();
            c.record("http_get", format!("GET {shown} failed: {e}"));
            m.insert("status".into(), Dynamic::from_int(0));
            m.insert("ok".into(), false.into());
            m.insert("error".into(), e.into());
        }
    }
    Ok(m)
}

/// Largest body `http_get` reads.
pub(super) const MAX_HTTP_BODY: usize = 64 * 1024;

/// A URL as it may appear in steps and logs: no credentials, no query string.
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Registers `http_get`.
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn("http_get", |url: &str| {
        http_get(url, Duration::from_secs(10))
    });
    engine.register_fn("http_get", |url: &str, timeout: &str| {
        http_get(url, duration_arg(timeout)?)
    });
}
