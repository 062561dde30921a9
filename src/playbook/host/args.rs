//! Conversions between the values a playbook passes and the host's types: targets, durations,
//! byte quantities.

use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, FLOAT, INT, Map};

use super::errors::runtime_error;
use crate::cluster::{Target, quantity};

pub(super) fn target_of(map: &Map) -> Result<Target, Box<EvalAltResult>> {
    let get = |k: &str| {
        map.get(k)
            .and_then(|v| v.clone().into_immutable_string().ok())
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| runtime_error(format!("target needs a string `{k}`")))
    };
    let kind = get("kind")?;
    // The canonical spelling, so knowledge-base keys and cluster calls agree on "deployment".
    let kind = crate::rules::canonical_kind(&kind).map_or(kind, str::to_string);
    Ok(Target {
        namespace: get("namespace")?,
        kind,
        name: get("name")?,
    })
}

/// The target as the map playbooks see.
pub fn target_map(t: &Target) -> Map {
    let mut m = Map::new();
    m.insert("namespace".into(), t.namespace.clone().into());
    m.insert("kind".into(), t.kind.clone().into());
    m.insert("name".into(), t.name.clone().into());
    m
}

pub(super) fn duration_arg(s: &str) -> Result<Duration, Box<EvalAltResult>> {
    crate::config::parse_duration(s).map_err(runtime_error)
}

/// Bytes from an integer, a float (rounded up) or a quantity string.
pub(super) fn bytes_arg(v: &Dynamic, what: &str) -> Result<i64, Box<EvalAltResult>> {
    if let Ok(i) = v.as_int() {
        return Ok(i);
    }
    if let Ok(f) = v.as_float() {
        return Ok(f.ceil() as i64);
    }
    if let Ok(s) = v.clone().into_immutable_string() {
        return quantity::parse_memory(&s).map_err(|e| runtime_error(format!("{what}: {e}")));
    }
    Err(runtime_error(format!(
        "{what}: expected bytes (integer) or a quantity like \"512Mi\", got {}",
        v.type_name()
    )))
}

/// `bytes × factor`, rounded up to a whole MiB (the unit people read limits in).
pub(super) fn scale(bytes: INT, factor: FLOAT) -> Result<INT, Box<EvalAltResult>> {
    if !(factor.is_finite() && factor > 0.0) {
        return Err(runtime_error(format!(
            "scale: factor must be a positive number, got {factor}"
        )));
    }
    const MI: f64 = 1024.0 * 1024.0;
    let scaled = (bytes as f64 * factor / MI).ceil() * MI;
    Ok(scaled as INT)
}

pub(super) fn opt_int(v: Option<i64>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from_int)
}
