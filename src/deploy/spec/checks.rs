//! The checks serde cannot make on a spec's strings: domains, label keys and values, environment
//! variable names, Python module paths. Each answers why a value is refused (`None`: fine), so
//! the spec's validation can name the field and the reason together.

use crate::k8s_name;

pub(super) fn domain_problem(s: &str) -> Option<String> {
    if s.starts_with("*.") {
        return Some("is a wildcard; name the host the app serves".into());
    }
    if s.ends_with('.') {
        return Some("ends with '.'".into());
    }
    if !s.contains('.') {
        return Some("has a single label".into());
    }
    if let Err(e) = k8s_name::dns1123_subdomain(s) {
        return Some(e.to_string());
    }
    // Kubernetes sets no per-part limit on a subdomain; DNS does, and a host must resolve.
    s.split('.')
        .find(|part| part.len() > k8s_name::LABEL_MAX)
        .map(|part| {
            format!(
                "has a part {} characters long, above {} (a DNS limit)",
                part.len(),
                k8s_name::LABEL_MAX
            )
        })
}

/// Why `s` cannot be a label value (`app.kubernetes.io/version`).
pub(super) fn label_value_problem(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 63 {
        return Some("must be 1 to 63 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !s.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !s.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Some(
            "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                .into(),
        );
    }
    None
}

/// Why `s` cannot be a label or annotation key: an optional DNS-1123 subdomain prefix and
/// `/`, then a name of 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a
/// letter or digit (`release`, `prometheus.io/scrape`).
pub fn label_key_problem(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    if let Some(prefix) = prefix
        && let Err(why) = k8s_name::dns1123_subdomain(prefix)
    {
        return Some(format!(
            "has a prefix {prefix:?} that {why}; a prefix is a DNS subdomain such as example.com"
        ));
    }
    label_value_problem(name).map(|why| format!("has a name part that {why}"))
}

pub(super) fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn is_python_module(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The refusal of a source URL carrying credentials; it never repeats them.
const CREDENTIALS: &str = "carries credentials; they would be stored and shown with the app: use a deploy key (ssh://git@host/…) or a public URL";

/// Why `url` cannot be the `source_url` of a `source_type` source. Credentials are refused
/// outright: a source URL is stored with the app and shown in the console and in errors, so a
/// password or token in it would leak (private repositories take a deploy key or a token
/// Secret instead).
pub(super) fn source_url_problem(url: &str, source_type: super::SourceType) -> Option<String> {
    use super::SourceType;
    if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must be a URL without whitespace".into());
    }
    // scp-like `git@github.com:acme/shop.git`: a git form with no scheme.
    let scp_like = !url.contains("://")
        && url
            .split_once(':')
            .is_some_and(|(host, path)| !host.contains('/') && !path.is_empty() && host.len() > 1);
    if source_type == SourceType::Git && scp_like {
        // `deploy:TOKEN@host:path` parses as scp-like too; the ':' in its user part can only
        // be a password (not echoed: it is the secret). `git@` alone is the usual public user.
        if crate::deploy::detect::git::scp_user(url).is_some_and(|user| user.contains(':')) {
            return Some(CREDENTIALS.into());
        }
        return None;
    }
    if source_type == SourceType::Upload && url.starts_with('/') {
        return archive_problem(url);
    }
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Some(match source_type {
            SourceType::Git => {
                "is not a git URL: https://, http://, git://, ssh://, file:// or git@host:path"
                    .into()
            }
            _ => {
                "is not an archive location: https://, http://, file:// or an absolute path".into()
            }
        });
    };
    let schemes: &[&str] = match source_type {
        SourceType::Git => &["https", "http", "git", "ssh", "file"],
        _ => &["https", "http", "file"],
    };
    if !schemes.contains(&parsed.scheme()) {
        return Some(format!(
            "has scheme {:?}; a {} source is one of {}",
            parsed.scheme(),
            source_type.as_str(),
            schemes.join(", ")
        ));
    }
    if parsed.password().is_some() || (!parsed.username().is_empty() && parsed.scheme() != "ssh") {
        // Not echoed: the part before '@' is the secret.
        return Some(CREDENTIALS.into());
    }
    if source_type == SourceType::Upload {
        return archive_problem(parsed.path());
    }
    None
}

/// Why `path` does not name an archive the upload source can unpack.
fn archive_problem(path: &str) -> Option<String> {
    const KINDS: [&str; 4] = [".tar.gz", ".tgz", ".tar", ".zip"];
    if KINDS.iter().any(|k| path.ends_with(k)) {
        None
    } else {
        Some(format!(
            "does not name an archive; an upload source is one of {}",
            KINDS.join(", ")
        ))
    }
}
