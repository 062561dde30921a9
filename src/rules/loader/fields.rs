//! The field types every rule shares, each checked while serde deserializes it so that a refusal
//! carries the position of the offending YAML node: durations with units, names of rules,
//! playbooks and routes, playbook parameters, and [`checked_map`] for checks of a whole mapping.
//!
//! Kept apart from the rules file's own shape (`loader.rs`) because they are building blocks: a
//! reader of the file format needs what a field accepts, not how a visitor is written.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};

/// A duration written with units (`30s`, `1h30m`); bare numbers are refused.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dur(pub(super) Duration);

const DURATION_FORM: &str = "a duration with a unit such as \"30s\", \"10m\" or \"1h30m\"";

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_FORM)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                let t = s.trim();
                if !t.is_empty() && t.parse::<f64>().is_ok() {
                    return Err(E::custom(format!(
                        "bare number `{t}` is not a duration: expected {DURATION_FORM}"
                    )));
                }
                humantime::parse_duration(t).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "invalid duration `{s}` ({e}): expected {DURATION_FORM}"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// A string restricted to a character set, e.g. rule and playbook names.
pub(super) struct Name<K>(pub(super) String, PhantomData<K>);

pub(super) trait NameKind {
    const WHAT: &'static str;
    const ALLOWED: &'static str;
    fn allowed(c: char) -> bool;
}

pub(super) struct RuleNameKind;
impl NameKind for RuleNameKind {
    const WHAT: &'static str = "rule name";
    const ALLOWED: &'static str = "[a-z0-9_.-]+";
    fn allowed(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
    }
}

pub(super) struct PlaybookNameKind;
impl NameKind for PlaybookNameKind {
    const WHAT: &'static str = "playbook name";
    const ALLOWED: &'static str = "[a-z0-9_-]+ (the file playbooks/<name>.rhai)";
    fn allowed(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')
    }
}

pub(super) struct RouteNameKind;
impl NameKind for RouteNameKind {
    const WHAT: &'static str = "notification route name";
    const ALLOWED: &'static str = "[A-Za-z0-9_.-]+";
    fn allowed(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    }
}

impl<'de, K: NameKind> Deserialize<'de> for Name<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(PhantomData<K>);
        impl<K: NameKind> Visitor<'_> for V<K> {
            type Value = Name<K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} matching {}", K::WHAT, K::ALLOWED)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name<K>, E> {
                if !s.is_empty() && s.chars().all(K::allowed) {
                    Ok(Name(s.to_owned(), PhantomData))
                } else {
                    Err(E::custom(format!(
                        "invalid {} `{s}`: expected {}",
                        K::WHAT,
                        K::ALLOWED
                    )))
                }
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Deserializes a mapping into `R`, then checks/converts it. The check runs inside the visitor
/// so a failure is reported at the mapping's position rather than its parent's.
pub(super) fn checked_map<'de, D, R, T>(
    d: D,
    expecting: &'static str,
    check: fn(R) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: Deserialize<'de>,
{
    struct V<R, T> {
        expecting: &'static str,
        check: fn(R) -> Result<T, String>,
    }
    impl<'de, R: Deserialize<'de>, T> Visitor<'de> for V<R, T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let raw = R::deserialize(MapAccessDeserializer::new(map))?;
            (self.check)(raw).map_err(de::Error::custom)
        }
    }
    d.deserialize_map(V { expecting, check })
}

/// Playbook parameters: any mapping (null means empty), kept as a JSON object.
pub(super) struct Params(pub(super) serde_json::Value);

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Params, A::Error> {
                serde_json::Value::deserialize(MapAccessDeserializer::new(map)).map(Params)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Params, E> {
                Ok(Params(empty_object()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Params, E> {
                Ok(Params(empty_object()))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}
