//! `scale(target, replicas)`: `kubectl scale` for playbooks, inside bounds a script cannot widen.
//!
//! The bounds come from the run's params (the rule's, or its escalation step's) and the
//! settings, never from the script's arguments: `min_replicas` (default 1, so a playbook never
//! scales a workload to zero unless its rule says `min_replicas: 0`) and `max_replicas`, which
//! can only lower `playbook.max_replicas`. A request outside them is refused before anything
//! reaches the cluster, with a message naming the bound and where it came from.

use rhai::{Dynamic, Engine, EvalAltResult, INT, Map};

use super::args::target_of;
use super::context::ctx;
use super::errors::runtime_error;
use super::gitops_fns::gate;
use crate::gitops::{Field, FieldChange};
use crate::rules::ChangeKind;

/// The params that bound `scale()`, as the run received them (`()` when absent).
#[derive(Clone, Debug, Default)]
pub struct ScaleParams {
    /// `params.min_replicas`.
    pub min: Dynamic,
    /// `params.max_replicas`.
    pub max: Dynamic,
}

impl ScaleParams {
    /// Picks `min_replicas` and `max_replicas` out of a run's params.
    pub fn of(params: &Map) -> ScaleParams {
        let get = |k: &str| params.get(k).cloned().unwrap_or(Dynamic::UNIT);
        ScaleParams {
            min: get("min_replicas"),
            max: get("max_replicas"),
        }
    }
}

/// The replica counts one run's `scale()` may set, and where each bound came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaBounds {
    /// Lowest count allowed.
    pub min: i64,
    /// Highest count allowed.
    pub max: i64,
    /// Where `max` came from, for messages.
    pub max_from: &'static str,
}

/// A param as a replica count: a whole number ≥ 0 (YAML `3`, or `"3"` from `--param`).
fn count_param(v: &Dynamic, name: &str) -> Result<Option<i64>, String> {
    if v.is_unit() {
        return Ok(None);
    }
    let n = if let Ok(i) = v.as_int() {
        Some(i)
    } else if let Ok(s) = v.clone().into_immutable_string() {
        s.trim().parse::<i64>().ok()
    } else {
        None
    };
    match n {
        Some(n) if n >= 0 => Ok(Some(n)),
        _ => Err(format!(
            "the param {name} must be a whole number of replicas (0 or more), got {v}"
        )),
    }
}

impl ReplicaBounds {
    /// The bounds for a run with `params` under the settings' `cap` (`playbook.max_replicas`).
    pub fn new(params: &ScaleParams, cap: i64) -> Result<ReplicaBounds, String> {
        let min = count_param(&params.min, "min_replicas")?.unwrap_or(1);
        let (max, max_from) = match count_param(&params.max, "max_replicas")? {
            Some(m) if m <= cap => (m, "the rule's max_replicas"),
            _ => (cap, "playbook.max_replicas"),
        };
        if min > max {
            return Err(format!(
                "min_replicas {min} is above the cap of {max} ({max_from}): no count is allowed"
            ));
        }
        Ok(ReplicaBounds { min, max, max_from })
    }

    /// Refuses `replicas` outside the bounds, saying which bound and how to change it.
    pub fn check(&self, replicas: i64) -> Result<(), String> {
        if replicas > self.max {
            return Err(format!(
                "refused: {replicas} replicas is above the cap of {} ({})",
                self.max, self.max_from
            ));
        }
        if replicas < self.min {
            let how = if replicas == 0 {
                "; scaling to zero needs min_replicas: 0 in the rule's params"
            } else {
                ""
            };
            return Err(format!(
                "refused: {replicas} replicas is below the floor of {} (min_replicas){how}",
                self.min
            ));
        }
        Ok(())
    }
}

/// Registers `scale(target, replicas)`. (`scale(bytes, factor)`, the quantity helper, is the
/// same name for other argument types: Rhai picks by type.)
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn(
        "scale",
        |t: Map, replicas: INT| -> Result<Map, Box<EvalAltResult>> {
            let c = ctx()?;
            let target = target_of(&t)?;
            let params = c.scale_params.lock().expect("scale params lock").clone();
            ReplicaBounds::new(&params, c.settings.max_replicas)
                .and_then(|b| b.check(replicas))
                .map_err(|e| runtime_error(format!("scale: {e}")))?;
            let planned = vec![FieldChange {
                field: Field::Replicas,
                value: replicas.to_string(),
            }];
            let gate = gate(&c, "scale", &target, ChangeKind::Scale, &|_| {
                Ok(Some((planned.clone(), None)))
            })?;
            let r = gate.checked(
                &c,
                c.call("scale", c.cluster.scale(&target, replicas, c.dry_run)),
            )?;
            gate.applied(&c, &[Field::Replicas]);
            c.record(
                "scale",
                format!("scale {target} from {} to {} replicas", r.from, r.to),
            );
            c.event(
                &target,
                "AutoRepairScale",
                &format!("scaled {target} from {} to {} replicas", r.from, r.to),
            );
            c.touch(&target);
            let mut m = Map::new();
            m.insert("from".into(), Dynamic::from_int(r.from));
            m.insert("to".into(), Dynamic::from_int(r.to));
            Ok(m)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(min: Dynamic, max: Dynamic) -> ScaleParams {
        ScaleParams { min, max }
    }

    #[test]
    fn without_params_a_scale_stays_between_one_and_the_settings_cap() {
        let b = ReplicaBounds::new(&ScaleParams::default(), 10).unwrap();
        assert_eq!((b.min, b.max, b.max_from), (1, 10, "playbook.max_replicas"));
        assert!(b.check(10).is_ok());
        assert_eq!(
            b.check(11).unwrap_err(),
            "refused: 11 replicas is above the cap of 10 (playbook.max_replicas)"
        );
        assert_eq!(
            b.check(0).unwrap_err(),
            "refused: 0 replicas is below the floor of 1 (min_replicas); scaling to zero needs min_replicas: 0 in the rule's params"
        );
    }

    #[test]
    fn a_rules_params_can_lower_the_cap_and_allow_zero_but_never_raise_the_cap() {
        let b =
            ReplicaBounds::new(&params(Dynamic::from_int(0), Dynamic::from_int(4)), 10).unwrap();
        assert_eq!(
            (b.min, b.max, b.max_from),
            (0, 4, "the rule's max_replicas")
        );
        assert!(b.check(0).is_ok());
        assert_eq!(
            b.check(5).unwrap_err(),
            "refused: 5 replicas is above the cap of 4 (the rule's max_replicas)"
        );
        let above = ReplicaBounds::new(&params(Dynamic::UNIT, Dynamic::from_int(50)), 10).unwrap();
        assert_eq!((above.max, above.max_from), (10, "playbook.max_replicas"));
        // `--param max_replicas=3` arrives as YAML, but a quoted "3" is a count too.
        let text = ReplicaBounds::new(&params(Dynamic::UNIT, Dynamic::from("3")), 10).unwrap();
        assert_eq!(text.max, 3);
    }

    #[test]
    fn bad_bound_params_are_errors_naming_the_param() {
        let e = ReplicaBounds::new(&params(Dynamic::from("many"), Dynamic::UNIT), 10).unwrap_err();
        assert!(e.contains("min_replicas") && e.contains("many"), "{e}");
        let e = ReplicaBounds::new(&params(Dynamic::from_int(-1), Dynamic::UNIT), 10).unwrap_err();
        assert!(e.contains("min_replicas"), "{e}");
        let e = ReplicaBounds::new(&params(Dynamic::from_int(6), Dynamic::from_int(4)), 10)
            .unwrap_err();
        assert_eq!(
            e,
            "min_replicas 6 is above the cap of 4 (the rule's max_replicas): no count is allowed"
        );
    }
}
