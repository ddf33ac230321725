//! The runtime pieces every evd role shares (the agent, consumer, bridge and
//! auditor), so each is written once: a Kafka client's native config from its layered
//! settings, topic metadata, retry backoff with jitter, and the stop token.
//!
//! The vocabulary without I/O (formats, the layered settings themselves, the clock)
//! is `evd_schemas`; what only the `evd` binary needs (HTTP, logging, config files)
//! is the `evd-ops` library.

pub mod backoff;
pub mod kafka;

/// The stop token every role's `run(parts, stop)` takes; the binary cancels it on
/// SIGTERM/SIGINT.
pub use tokio_util::sync::CancellationToken as Stop;
