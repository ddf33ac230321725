//! Fault switches for the reliability suite, compiled in only with the `test-faults`
//! cargo feature, which only the workspace's `tests` crate enables. A build made as the
//! README says (`cargo build --release -p evd-ops`) has none of this: the environment
//! variables below are not even named in its binary, and [`switches`] always answers
//! "off".
//!
//! With the feature, each switch is read once, at first use, and announced on stderr
//! when set:
//!
//! - `EVD_CRASH_AT=<step>` aborts the process at that commit step (`staged`,
//!   `manifest`, `copy`, `done`, `offsets`, `acks`, or `any`) with probability
//!   `EVD_CRASH_PROBABILITY` (default 1).
//! - `EVD_TEST_STORE_FAULTS="error=0.05,lost_reply=0.05,slow_staging_ms=N,ignore_create_only=1"` wraps the
//!   output store in [`crate::store_faults::FaultyStore`].
//! - `EVD_TEST_SKIP_DEDUP` (any value): a deliberately broken consumer that writes
//!   batches its ledger already holds; the suite shows its checker catches it.
//! - `EVD_TEST_LOSE_BATCH_SEQ=<n>`: silently lose every batch with that seq while
//!   claiming it delivered; the auditor must catch it.

use std::sync::OnceLock;

/// Probabilities of each object-store fault, per request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    pub error: f64,
    pub lost_reply: f64,
    pub slow_staging_ms: u64,
    /// Create-only puts overwrite, like a store that ignores `If-None-Match`.
    pub ignore_create_only: bool,
}

/// The consumer's test switches; all off in a build without `test-faults`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConsumerSwitches {
    /// The commit step to abort at, and the probability of aborting there.
    pub crash_at: Option<(String, f64)>,
    /// Object-store faults, or why the spec was refused.
    pub store_faults: Option<Result<FaultRates, String>>,
    pub skip_dedup: bool,
    pub lose_batch_seq: Option<u64>,
}

impl ConsumerSwitches {
    pub fn any(&self) -> bool {
        *self != ConsumerSwitches::default()
    }
}

/// The switches of this process, read once.
pub fn switches() -> &'static ConsumerSwitches {
    static SWITCHES: OnceLock<ConsumerSwitches> = OnceLock::new();
    SWITCHES.get_or_init(|| {
        let switches = from_env();
        if switches.any() {
            tracing::warn!("TEST FAULT SWITCHES ACTIVE (test build): {switches:?}");
        }
        switches
    })
}

/// Aborts the process if the crash switch names `step` (and its dice say so).
pub fn crash_point(step: &str) {
    if let Some((at, p)) = &switches().crash_at
        && (at == step || at == "any")
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        if f64::from(nanos % 1_000_000) / 1_000_000.0 < *p {
            tracing::warn!("test crash point {step}: aborting");
            std::process::abort();
        }
    }
}

#[cfg(feature = "test-faults")]
fn from_env() -> ConsumerSwitches {
    let crash_at = std::env::var("EVD_CRASH_AT").ok().map(|at| {
        let p = std::env::var("EVD_CRASH_PROBABILITY")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(1.0);
        (at, p)
    });
    ConsumerSwitches {
        crash_at,
        store_faults: std::env::var("EVD_TEST_STORE_FAULTS")
            .ok()
            .map(|spec| crate::store_faults::parse_rates(&spec)),
        skip_dedup: std::env::var_os("EVD_TEST_SKIP_DEDUP").is_some(),
        lose_batch_seq: std::env::var("EVD_TEST_LOSE_BATCH_SEQ")
            .ok()
            .and_then(|v| v.parse().ok()),
    }
}

#[cfg(not(feature = "test-faults"))]
fn from_env() -> ConsumerSwitches {
    ConsumerSwitches::default()
}
