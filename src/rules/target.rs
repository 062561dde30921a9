//! Which Kubernetes object a rule acts on, taken from the alert's labels.
//!
//! Each of namespace, kind and name is a list of sources tried in order; `$label` takes the value
//! of that label (absent or empty does not resolve), anything else is a literal.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::Labels;
use super::matcher::is_label_name;

/// The workload kinds repairs know how to handle, in canonical spelling.
pub const SUPPORTED_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// Canonical spelling of a supported kind, accepting any letter case (`deployment` is how
/// kubectl users often label it, and silently not acting on it would be worse).
pub fn canonical_kind(s: &str) -> Option<&'static str> {
    SUPPORTED_KINDS
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(s))
}

/// Where one part of the target comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The value of this alert label (written `$label`).
    Label(String),
    /// This fixed text.
    Literal(String),
}

impl Source {
    fn resolve<'a>(&'a self, labels: &'a Labels) -> Option<&'a str> {
        match self {
            Source::Label(l) => labels.get(l).map(String::as_str).filter(|v| !v.is_empty()),
            Source::Literal(v) => Some(v),
        }
    }

    /// Parses `$label` or a literal.
    pub fn parse(s: &str) -> Result<Source, String> {
        if let Some(label) = s.strip_prefix('$') {
            if is_label_name(label) {
                Ok(Source::Label(label.to_owned()))
            } else {
                Err(format!(
                    "`{s}`: `$` must be followed by a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ))
            }
        } else if s.trim().is_empty() {
            Err("empty target value".to_owned())
        } else {
            Ok(Source::Literal(s.to_owned()))
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Label(l) => write!(f, "${l}"),
            Source::Literal(v) => f.write_str(v),
        }
    }
}

/// How a rule derives its [`Target`] from an alert's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// Sources for the namespace, first that resolves wins.
    pub namespace: Vec<Source>,
    /// Sources for the kind; the value must be a supported kind.
    pub kind: Vec<Source>,
    /// Sources for the object name.
    pub name: Vec<Source>,
}

fn labels_of(names: &[&str]) -> Vec<Source> {
    names
        .iter()
        .map(|n| Source::Label((*n).to_owned()))
        .collect()
}

impl TargetSpec {
    /// Default namespace sources: `[$namespace]`.
    pub fn default_namespace() -> Vec<Source> {
        labels_of(&["namespace"])
    }

    /// Default kind sources: `[$target_kind, Deployment]`.
    pub fn default_kind() -> Vec<Source> {
        vec![
            Source::Label("target_kind".to_owned()),
            Source::Literal("Deployment".to_owned()),
        ]
    }

    /// Default name sources: `[$target_name, $deployment, $statefulset, $daemonset, $app]`.
    pub fn default_name() -> Vec<Source> {
        labels_of(&[
            "target_name",
            "deployment",
            "statefulset",
            "daemonset",
            "app",
        ])
    }

    /// The target for these labels, or `None` when a part does not resolve or the kind is not
    /// one of [`SUPPORTED_KINDS`].
    pub fn resolve(&self, labels: &Labels) -> Option<Target> {
        fn first<'a>(sources: &'a [Source], labels: &'a Labels) -> Option<&'a str> {
            sources.iter().find_map(|s| s.resolve(labels))
        }
        let namespace = first(&self.namespace, labels)?;
        let kind = canonical_kind(first(&self.kind, labels)?)?;
        let name = first(&self.name, labels)?;
        Some(Target {
            namespace: namespace.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec {
            namespace: Self::default_namespace(),
            kind: Self::default_kind(),
            name: Self::default_name(),
        }
    }
}

/// A resolved Kubernetes object.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Target {
    /// Namespace.
    pub namespace: String,
    /// One of [`SUPPORTED_KINDS`].
    pub kind: String,
    /// Object name.
    pub name: String,
}

impl Target {
    /// `namespace/Kind/name`, the key cooldowns and budgets are kept under.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Whether the namespace and name can be used in a Kubernetes API path (see
    /// [`crate::k8s_name`]): a label value like `default/../kube-system` or `web?dryRun=All`
    /// resolves to a `Target`, and must be refused before any guard or call uses it.
    pub fn check_names(&self) -> Result<(), crate::k8s_name::InvalidTarget> {
        crate::k8s_name::target(&self.namespace, &self.name)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// One string or a list of strings, each parsed to a [`Source`]; `KIND` also validates literals
/// as kinds, so a typo in a rule fails at load and not at 3 a.m.
struct Sources<const KIND: bool>(Vec<Source>);

struct OneSource<const KIND: bool>(Source);

fn parse_source<const KIND: bool>(s: &str) -> Result<Source, String> {
    let src = Source::parse(s)?;
    match src {
        Source::Literal(lit) if KIND => match canonical_kind(&lit) {
            Some(k) => Ok(Source::Literal(k.to_owned())),
            None => Err(format!(
                "unsupported kind `{lit}`: expected one of {}",
                SUPPORTED_KINDS.join(", ")
            )),
        },
        other => Ok(other),
    }
}

impl<'de, const KIND: bool> Deserialize<'de> for OneSource<KIND> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const KIND: bool>;
        impl<const KIND: bool> Visitor<'_> for V<KIND> {
            type Value = OneSource<KIND>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`$label` or a literal string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                parse_source::<KIND>(s).map(OneSource).map_err(E::custom)
            }
        }
        d.deserialize_str(V::<KIND>)
    }
}

impl<'de, const KIND: bool> Deserialize<'de> for Sources<KIND> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const KIND: bool>;
        impl<'de, const KIND: bool> Visitor<'de> for V<KIND> {
            type Value = Sources<KIND>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`$label`, a literal, or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                parse_source::<KIND>(s)
                    .map(|s| Sources(vec![s]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(OneSource(s)) = seq.next_element::<OneSource<KIND>>()? {
                    out.push(s);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("empty list of target sources"));
                }
                Ok(Sources(out))
            }
        }
        d.deserialize_any(V::<KIND>)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    namespace: Option<Sources<false>>,
    #[serde(default)]
    kind: Option<Sources<true>>,
    #[serde(default)]
    name: Option<Sources<false>>,
}

impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawTarget::deserialize(d)?;
        // A literal namespace or name is checked as the API server would check it, so a typo
        // (`Prod`, `web/`) fails `aiops check` instead of refusing every alert as invalid_target.
        let literals =
            |sources: &Option<Sources<false>>,
             part: &str,
             check: fn(&str) -> Result<(), crate::k8s_name::NameError>| {
                for src in sources.iter().flat_map(|s| &s.0) {
                    if let Source::Literal(v) = src
                        && let Err(why) = check(v)
                    {
                        return Err(de::Error::custom(format!(
                            "target {part} {} {why}",
                            crate::k8s_name::quoted(v, 80)
                        )));
                    }
                }
                Ok(())
            };
        literals(&raw.namespace, "namespace", crate::k8s_name::namespace)?;
        literals(&raw.name, "name", crate::k8s_name::workload)?;
        Ok(TargetSpec {
            namespace: raw
                .namespace
                .map_or_else(TargetSpec::default_namespace, |s| s.0),
            kind: raw.kind.map_or_else(TargetSpec::default_kind, |s| s.0),
            name: raw.name.map_or_else(TargetSpec::default_name, |s| s.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn spec(yaml: &str) -> TargetSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_literal_namespace_or_name_that_is_not_a_kubernetes_name_fails_at_load() {
        for yaml in [
            "{namespace: Prod}",
            "{name: web/status}",
            "{name: [$app, '../x']}",
        ] {
            let err = serde_yaml::from_str::<TargetSpec>(yaml).unwrap_err();
            assert!(err.to_string().contains("which is not"), "{yaml}: {err}");
        }
        assert!(serde_yaml::from_str::<TargetSpec>("{namespace: prod, name: web.v2}").is_ok());
    }

    #[test]
    fn default_spec_takes_namespace_and_deployment_from_labels() {
        let t = TargetSpec::default()
            .resolve(&labels(&[("namespace", "shop"), ("deployment", "cart")]))
            .unwrap();
        assert_eq!(t.key(), "shop/Deployment/cart");
    }

    #[test]
    fn default_name_prefers_target_name_then_workload_labels_then_app() {
        let spec = TargetSpec::default();
        let base = [("namespace", "ns"), ("app", "a"), ("statefulset", "s")];
        assert_eq!(spec.resolve(&labels(&base)).unwrap().name, "s");
        let mut with_target = base.to_vec();
        with_target.push(("target_name", "t"));
        assert_eq!(spec.resolve(&labels(&with_target)).unwrap().name, "t");
        assert_eq!(
            spec.resolve(&labels(&[("namespace", "ns"), ("app", "a")]))
                .unwrap()
                .name,
            "a"
        );
    }

    #[test]
    fn target_kind_label_overrides_the_deployment_default() {
        let t = TargetSpec::default()
            .resolve(&labels(&[
                ("namespace", "ns"),
                ("target_kind", "statefulset"),
                ("app", "db"),
            ]))
            .unwrap();
        assert_eq!(t.kind, "StatefulSet");
    }

    #[test]
    fn unsupported_kind_label_resolves_to_none() {
        let l = labels(&[
            ("namespace", "ns"),
            ("target_kind", "CronJob"),
            ("app", "x"),
        ]);
        assert_eq!(TargetSpec::default().resolve(&l), None);
    }

    #[test]
    fn missing_or_empty_labels_fall_through_and_may_resolve_to_none() {
        let spec = TargetSpec::default();
        assert_eq!(spec.resolve(&labels(&[("app", "x")])), None);
        assert_eq!(
            spec.resolve(&labels(&[("namespace", ""), ("app", "x")])),
            None
        );
        assert_eq!(spec.resolve(&labels(&[("namespace", "ns")])), None);
    }

    #[test]
    fn literals_and_lists_are_taken_in_order() {
        let s = spec("namespace: prod\nkind: DaemonSet\nname: [$pod_owner, fallback]\n");
        assert_eq!(s.namespace, vec![Source::Literal("prod".into())]);
        let t = s.resolve(&labels(&[])).unwrap();
        assert_eq!(t.key(), "prod/DaemonSet/fallback");
        let t = s.resolve(&labels(&[("pod_owner", "agent")])).unwrap();
        assert_eq!(t.key(), "prod/DaemonSet/agent");
    }

    #[test]
    fn omitted_fields_keep_their_defaults() {
        let s = spec("name: $service\n");
        assert_eq!(s.namespace, TargetSpec::default_namespace());
        assert_eq!(s.kind, TargetSpec::default_kind());
        assert_eq!(s.name, vec![Source::Label("service".into())]);
    }

    #[test]
    fn kind_literals_are_validated_and_normalised() {
        assert_eq!(
            spec("kind: statefulset\n").kind,
            vec![Source::Literal("StatefulSet".into())]
        );
        let e = serde_yaml::from_str::<TargetSpec>("kind: [$k, CronJob]\n").unwrap_err();
        assert!(e.to_string().contains("unsupported kind `CronJob`"), "{e}");
    }

    #[test]
    fn bad_sources_are_rejected() {
        for bad in [
            "name: $\n",
            "name: $a-b\n",
            "name: []\n",
            "name: ''\n",
            "nme: x\n",
        ] {
            assert!(serde_yaml::from_str::<TargetSpec>(bad).is_err(), "{bad}");
        }
    }
}
