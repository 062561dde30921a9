//! Kubernetes object names, validated as the API server validates them.
//!
//! One implementation for the whole crate: intake checks the namespace and name an alert's labels
//! resolve to before any guard looks at them, the cluster backends check again before a name
//! becomes part of a request path (a playbook can pass any string), and the deploy module checks
//! what it renders. A name that passes here cannot add a path segment (`/`), climb (`..`), start
//! a query (`?`) or reach a subresource, because only lowercase letters, digits, `-` and `.`
//! pass, and never a segment made of dots alone.
//!
//! The rules are apimachinery's `IsDNS1123Label` (at most 63 characters of `[a-z0-9-]`, starting
//! and ending alphanumeric), `IsDNS1123Subdomain` (at most 253 characters, dot-separated parts
//! that each start and end alphanumeric; Kubernetes sets no per-part limit) and `IsDNS1035Label`
//! (a DNS-1123 label starting with a letter). Hand-written rather than a crate: the rules are
//! three short functions, and k8s-openapi carries none of them.

/// Longest DNS-1123 label (a namespace, a Service name).
pub const LABEL_MAX: usize = 63;

/// Longest DNS-1123 subdomain (a Deployment, StatefulSet, DaemonSet or Secret name).
pub const SUBDOMAIN_MAX: usize = 253;

/// Why a string is not a valid name. The messages read as a predicate after the value
/// (`"Web" has 'W', which is …`) and never repeat the value, which may be long.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing at all.
    #[error("is empty")]
    Empty,
    /// More characters than the kind of name allows.
    #[error("is {len} characters long, above {max}")]
    TooLong {
        /// Length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside `[a-z0-9-]` (a label).
    #[error("has {0:?}, which is not a lowercase letter, digit or '-'")]
    BadChar(char),
    /// A character outside `[a-z0-9.-]` (a subdomain).
    #[error("has {0:?}, which is not a lowercase letter, digit, '-' or '.'")]
    BadSubdomainChar(char),
    /// A leading or trailing `-`.
    #[error("starts or ends with '-'")]
    BadEdge,
    /// A dot-separated part that is empty or starts or ends with `-` (`..`, `.web`, `a-.b`).
    #[error("has a dot-separated part that is empty or starts or ends with '-'")]
    BadSubdomainPart,
    /// A DNS-1035 label must start with a letter.
    #[error("does not start with a lowercase letter")]
    NotLetterStart,
}

/// Whether `s` is a DNS-1123 label of at most `max` (≤ 63) characters.
pub fn dns1123_label(s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > max {
        return Err(NameError::TooLong { len: s.len(), max });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::BadChar(c));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(NameError::BadEdge);
    }
    Ok(())
}

/// Whether `s` is a DNS-1035 label (a DNS-1123 label starting with a letter: Service names).
pub fn dns1035_label(s: &str, max: usize) -> Result<(), NameError> {
    dns1123_label(s, max)?;
    if s.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(NameError::NotLetterStart)
    }
}

/// Whether `s` is a DNS-1123 subdomain: at most 253 characters, dot-separated parts of
/// `[a-z0-9-]` that each start and end with a letter or digit.
pub fn dns1123_subdomain(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > SUBDOMAIN_MAX {
        return Err(NameError::TooLong {
            len: s.len(),
            max: SUBDOMAIN_MAX,
        });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(NameError::BadSubdomainChar(c));
    }
    let edge_ok = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if s.split('.').all(edge_ok) {
        Ok(())
    } else {
        Err(NameError::BadSubdomainPart)
    }
}

/// Whether `s` can name a namespace.
pub fn namespace(s: &str) -> Result<(), NameError> {
    dns1123_label(s, LABEL_MAX)
}

/// Whether `s` can name a workload repairs act on. Deployments, StatefulSets and DaemonSets are
/// all named by DNS-1123 subdomains (apps/v1 validation: `ValidateDeploymentName`,
/// `ValidateStatefulSetName`, `ValidateDaemonSetName` are `NameIsDNSSubdomain`).
pub fn workload(s: &str) -> Result<(), NameError> {
    dns1123_subdomain(s)
}

/// A workload reference (namespace, name) that cannot be used in a Kubernetes API path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{part} {value} {reason}; a {part} must be a {rule}")]
pub struct InvalidTarget {
    /// `namespace` or `name`.
    pub part: &'static str,
    /// The value, quoted and cut short by [`quoted`].
    pub value: String,
    /// What is wrong with it.
    pub reason: NameError,
    /// The rule it breaks, for the message.
    pub rule: &'static str,
}

/// Checks a workload's namespace (a DNS-1123 label) and name (a DNS-1123 subdomain), namespace
/// first: what must hold before a guard compares the namespace or a request path is built.
pub fn target(namespace: &str, name: &str) -> Result<(), InvalidTarget> {
    self::namespace(namespace).map_err(|reason| InvalidTarget {
        part: "namespace",
        value: quoted(namespace, 80),
        reason,
        rule: "DNS-1123 label (at most 63 lowercase letters, digits or '-')",
    })?;
    workload(name).map_err(|reason| InvalidTarget {
        part: "name",
        value: quoted(name, 80),
        reason,
        rule: "DNS-1123 subdomain (at most 253 lowercase letters, digits, '-' or '.')",
    })
}

/// `s` quoted for a message, cut to `max` characters so a hostile label cannot fill a log line,
/// a stored detail or an HTTP answer.
pub fn quoted(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_dns_1123_labels() {
        for ok in ["default", "kube-system", "a", "0abc", &"a".repeat(63)] {
            assert_eq!(namespace(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Default",
            "default/../kube-system",
            "..",
            "a.b",
            "-a",
            "a-",
            "web?dryRun=All",
            "ns\0",
            &"a".repeat(64),
        ] {
            assert!(namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn workload_names_are_dns_1123_subdomains_without_traversal_or_query() {
        for ok in [
            "web",
            "web-1",
            "web.v2",
            "a",
            &"a".repeat(70),
            &"a".repeat(253),
        ] {
            assert_eq!(workload(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".",
            "../secrets/x",
            "web/status",
            "web?dryRun=All&x=",
            "a..b",
            ".web",
            "web.",
            "web-.x",
            "Web",
            "web%2fstatus",
            "web name",
            &"a".repeat(254),
        ] {
            assert!(workload(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_name_the_problem_without_repeating_the_value() {
        assert_eq!(
            namespace("Shop").unwrap_err().to_string(),
            "has 'S', which is not a lowercase letter, digit or '-'"
        );
        assert_eq!(
            workload("web/status").unwrap_err().to_string(),
            "has '/', which is not a lowercase letter, digit, '-' or '.'"
        );
        assert_eq!(
            namespace(&"a".repeat(64)).unwrap_err().to_string(),
            "is 64 characters long, above 63"
        );
        assert_eq!(
            dns1035_label("1web", 40).unwrap_err(),
            NameError::NotLetterStart
        );
    }

    #[test]
    fn a_target_names_the_part_that_is_wrong() {
        assert_eq!(target("prod", "web"), Ok(()));
        let e = target("default/../kube-system", "coredns").unwrap_err();
        assert_eq!(e.part, "namespace");
        assert!(
            e.to_string()
                .starts_with("namespace \"default/../kube-system\" has '/'"),
            "{e}"
        );
        let e = target("prod", "../../secrets/db").unwrap_err();
        assert_eq!(e.part, "name");
        let e = target("prod", &"w".repeat(9000)).unwrap_err();
        assert!(e.to_string().len() < 400, "a long value is cut: {e}");
    }

    #[test]
    fn quoting_cuts_long_values_and_says_how_long_they_were() {
        assert_eq!(quoted("web", 10), "\"web\"");
        assert_eq!(quoted(&"x".repeat(20), 4), "\"xxxx\"… (20 bytes)");
        assert_eq!(quoted("a\0b", 10), "\"a\\0b\"");
    }
}
