//! The `evd` binary's logging: every crate logs through `tracing`; this installs the
//! one subscriber, on stderr.
//!
//! - Level filter from `RUST_LOG` (`info` when unset), e.g.
//!   `RUST_LOG=info,evd_consumer=debug` or `RUST_LOG=warn`.
//! - `--log-format text` (default: timestamp, level, target, message, fields) or
//!   `--log-format json` (one JSON object per line, for a log pipeline).
//! - librdkafka's own log lines and error callbacks arrive through rdkafka's
//!   `tracing` feature under the `rdkafka` target (auth failures, all brokers down).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the subscriber; a bad `RUST_LOG` falls back to `info` and says so.
pub fn init(format: LogFormat) {
    let (filter, bad) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(e) => (
            EnvFilter::new("info"),
            std::env::var("RUST_LOG").ok().map(|v| (v, e)),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    if let Some((value, e)) = bad
        && !value.is_empty()
    {
        tracing::warn!(rust_log = %value, error = %e, "RUST_LOG not understood; logging at info");
    }
}
