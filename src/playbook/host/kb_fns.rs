//! The knowledge-base functions (`kb_success_rate`, `kb_count`, `kb_recent`): store reads under
//! the call timeout; offline (no store) they answer as an empty knowledge base.

use rhai::{Dynamic, Engine, EvalAltResult, INT, Map};

use super::args::{duration_arg, target_of};
use super::context::ctx;
use super::errors::runtime_error;
use crate::store::{self, Store};

pub(super) fn kb<T: Send + 'static>(
    f: impl FnOnce(
        Store,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = store::Result<T>> + Send>>,
    empty: T,
) -> Result<T, Box<EvalAltResult>> {
    let c = ctx()?;
    let Some(store) = c.store.clone() else {
        return Ok(empty);
    };
    let limit = c.settings.call_timeout.min(c.remaining());
    match c
        .handle
        .block_on(async move { tokio::time::timeout(limit, f(store)).await })
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(runtime_error(format!("knowledge base: {e}"))),
        Err(_) => Err(runtime_error(format!(
            "knowledge base: timed out after {limit:?}"
        ))),
    }
}

/// Registers the knowledge-base functions.
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn(
        "kb_success_rate",
        |playbook: &str, alertname: &str, window: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let since = store::now_ms() - store::ms(duration_arg(window)?);
            let (p, a) = (playbook.to_string(), alertname.to_string());
            let rate = kb(
                move |s| Box::pin(async move { s.success_rate(&p, &a, since).await }),
                None,
            )?;
            Ok(rate.map_or(Dynamic::UNIT, Dynamic::from_float))
        },
    );
    engine.register_fn(
        "kb_count",
        |playbook: &str, t: Map, window: &str| -> Result<INT, Box<EvalAltResult>> {
            let target = target_of(&t)?;
            let since = store::now_ms() - store::ms(duration_arg(window)?);
            let p = playbook.to_string();
            kb(
                move |s| Box::pin(async move { s.changes_by(&p, &target.key(), since).await }),
                0,
            )
        },
    );
    engine.register_fn(
        "kb_recent",
        |t: Map, n: INT| -> Result<rhai::Array, Box<EvalAltResult>> {
            let target = target_of(&t)?;
            let jobs = kb(
                move |s| {
                    Box::pin(async move { s.recent_jobs_of(&target.key(), n.clamp(0, 100)).await })
                },
                Vec::new(),
            )?;
            Ok(jobs
                .into_iter()
                .map(|j| {
                    let mut m = Map::new();
                    m.insert("id".into(), Dynamic::from_int(j.id));
                    m.insert("playbook".into(), j.playbook.into());
                    m.insert("rule".into(), j.rule.into());
                    m.insert("state".into(), j.state.as_str().into());
                    m.insert("outcome".into(), j.outcome.unwrap_or_default().into());
                    m.insert("created_at".into(), Dynamic::from_int(j.created_at));
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );
}
