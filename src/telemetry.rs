//! Logging: tracing with a human format for terminals and JSON for log pipelines.
//!
//! The JSON format is tracing-subscriber's, one object per line with the event's fields
//! flattened beside the formatter's own keys ([`FORMATTER_KEYS`]). A log pipeline (jq, Loki,
//! Elasticsearch) keeps only one value of a repeated key, so no event of this crate may name a
//! field after one of those keys: the repair target, for instance, is `repair_target`, never
//! `target` (tracing's module path). README.md ("Logs") lists the fields.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log output format, chosen with `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line (for Loki, Elasticsearch, tests).
    Json,
}

/// How much a process logs when `AIOPS_LOG` does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// `aiops serve`: `info`, the daemon's record of what it decided and did.
    Daemon,
    /// Every other command: `warn`. A command's answer is its output; INFO lines on stderr would
    /// only mix into what the operator reads or redirects.
    Command,
}

impl Verbosity {
    /// The filter used when `AIOPS_LOG` is unset or invalid (`RUST_LOG` syntax).
    pub fn default_filter(self) -> &'static str {
        match self {
            // sqlx logs every slow statement at info; its warnings are what matter.
            Verbosity::Daemon => "info,sqlx=warn",
            Verbosity::Command => "warn",
        }
    }
}

/// The keys tracing-subscriber's JSON formatter writes itself (with the settings of [`init`],
/// `span`/`spans` only inside a span). An event field of the same name would repeat the key.
pub const FORMATTER_KEYS: [&str; 9] = [
    "timestamp",
    "level",
    "target",
    "fields",
    "span",
    "spans",
    "filename",
    "line_number",
    "threadId",
];

/// Whether human-format lines may carry ANSI colours: only on a terminal, and not when the
/// `NO_COLOR` convention (<https://no-color.org>) asks for none.
fn ansi(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// The environment variable holding the log filter.
pub const LOG_ENV: &str = "AIOPS_LOG";

/// Installs the global subscriber writing to stderr. The filter comes from `AIOPS_LOG`
/// (`RUST_LOG` syntax, e.g. `AIOPS_LOG=aiops=debug,sqlx=warn`), else from `verbosity`. As with
/// every `AIOPS_*` variable, an empty one counts as unset; one that does not parse is said
/// (a warning) and the default is used.
pub fn init(format: LogFormat, verbosity: Verbosity) {
    let configured = std::env::var(LOG_ENV).ok().filter(|v| !v.trim().is_empty());
    let (filter, invalid) = match configured.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (EnvFilter::new(verbosity.default_filter()), Some(e)),
        None => (EnvFilter::new(verbosity.default_filter()), None),
    };
    let colour = ansi(
        std::io::stderr().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    // A second init (tests calling into main paths) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Some(e) = invalid {
        tracing::warn!(error = %e, default = verbosity.default_filter(), "AIOPS_LOG is not a valid log filter; using the default");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_when_no_color_is_set() {
        assert!(ansi(true, None));
        assert!(ansi(true, Some("")), "an empty NO_COLOR counts as unset");
        assert!(!ansi(true, Some("1")));
        assert!(!ansi(false, None));
    }

    /// The arguments of every `tracing::<macro>!(…)` call in `src`, with the file and line.
    fn tracing_calls(src: &str) -> Vec<(usize, String)> {
        let start = regex::Regex::new(r"tracing::[a-z_]+!\s*\(").unwrap();
        let mut calls = Vec::new();
        for m in start.find_iter(src) {
            let (mut depth, mut in_str, mut escaped) = (1, false, false);
            let body = &src[m.end()..];
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match (in_str, escaped, c) {
                        (true, true, _) => escaped = false,
                        (true, false, '\\') => escaped = true,
                        (true, false, '"') => in_str = false,
                        (true, false, _) => {}
                        (false, _, '"') => in_str = true,
                        (false, _, '(' | '[' | '{') => depth += 1,
                        (false, _, ')' | ']' | '}') => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(body.len(), |(i, _)| i);
            let line = src[..m.start()].matches('\n').count() + 1;
            calls.push((line, body[..end].to_string()));
        }
        calls
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_log_call_in_the_crate_names_a_field_after_a_key_of_the_json_formatter() {
        // The binary test (tests/cli.rs) checks the lines a repair writes; this covers the
        // calls that run does not reach. `message` is the event's text: a field of that name
        // beside a format string writes the key twice.
        let field =
            regex::Regex::new(r"^\s*[%?]?(?:r#)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:=[^=]|$)").unwrap();
        let string = regex::Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
        let mut files = Vec::new();
        rust_files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut found = Vec::new();
        for file in &files {
            let src = std::fs::read_to_string(file).unwrap();
            for (line, call) in tracing_calls(&src) {
                // Strings may hold commas and `=`: blank them before looking for fields.
                let bare = string.replace_all(&call, "\"\"");
                // A comma inside an argument only splits it into pieces that name no field.
                for c in bare.split(',').filter_map(|arg| field.captures(arg)) {
                    let name = &c[1];
                    if FORMATTER_KEYS.contains(&name) || name == "message" {
                        found.push(format!("{}:{line}: {name}", file.display()));
                    }
                }
            }
        }
        assert!(!files.is_empty());
        assert!(
            found.is_empty(),
            "fields named after JSON log keys: {found:#?}"
        );
    }
}
