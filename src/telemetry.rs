//! Logging: tracing with a human format for terminals and JSON for log pipelines.

use tracing_subscriber::EnvFilter;

/// Log output format, chosen with `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line (for Loki, Elasticsearch, tests).
    Json,
}

/// Installs the global subscriber. The filter comes from `AIOPS_LOG` (`info` by default),
/// using `RUST_LOG` syntax, e.g. `AIOPS_LOG=aiops=debug,sqlx=warn`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("AIOPS_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling into main paths) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
