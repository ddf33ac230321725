//! The runtime pieces every evd role shares (the agent, consumer, bridge and
//! auditor), so each is written once: a Kafka client's native config from its layered
//! settings, topic metadata, retry backoff with jitter, the stop token, and the
//! boxed source a role error keeps (printed whole by [`error_chain`]).
//!
//! The vocabulary without I/O (formats, the layered settings themselves, the clock)
//! is `evd_schemas`; what only the `evd` binary needs (HTTP, logging, config files)
//! is the `evd-ops` library.

pub mod backoff;
pub mod kafka;

/// The stop token every role's `run(parts, stop)` takes; the binary cancels it on
/// SIGTERM/SIGINT.
pub use tokio_util::sync::CancellationToken as Stop;

/// The error underneath a role's error: kept as its `source`, so the binary prints
/// the whole chain (`what: cause: cause…`) and a caller can still downcast it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a role (agent, consumer, bridge) stopped, by what the operator does next.
/// `what` says what failed; `source`, when there is one, is the error underneath.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The configuration, keyring or state on disk does not fit: fix what `what`
    /// names.
    #[error("configuration: {what}")]
    Config {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Durability or delivery could not be guaranteed: the process exits non-zero and
    /// is restarted (nothing unacknowledged was acked or committed, so nothing is lost).
    #[error("fatal: {what}")]
    Fatal {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl RoleError {
    pub fn config(what: impl Into<String>, source: impl Into<BoxError>) -> RoleError {
        let (what, source) = (what.into(), Some(source.into()));
        RoleError::Config { what, source }
    }

    pub fn fatal(what: impl Into<String>, source: impl Into<BoxError>) -> RoleError {
        let (what, source) = (what.into(), Some(source.into()));
        RoleError::Fatal { what, source }
    }

    /// A configuration error with nothing underneath.
    pub fn config_msg(what: impl Into<String>) -> RoleError {
        RoleError::Config {
            what: what.into(),
            source: None,
        }
    }

    /// A fatal error with nothing underneath.
    pub fn fatal_msg(what: impl Into<String>) -> RoleError {
        RoleError::Fatal {
            what: what.into(),
            source: None,
        }
    }
}

impl From<evd_schemas::kafka_client::SettingError> for RoleError {
    fn from(e: evd_schemas::kafka_client::SettingError) -> Self {
        RoleError::config("kafka settings", e)
    }
}

/// `e` and its sources joined by `": "`, as a log line or a dashboard shows an error.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("socket /run/evd.sock")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn the_chain_shows_every_cause_once_and_the_source_stays_typed() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let boxed: BoxError = Outer { source: io }.into();
        assert_eq!(
            error_chain(&*boxed),
            "socket /run/evd.sock: permission denied"
        );
        let cause = boxed.source().expect("a source");
        let io = cause
            .downcast_ref::<std::io::Error>()
            .expect("still an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    }
}
