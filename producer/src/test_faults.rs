//! Fault switches for the reliability suite, compiled in only with the `test-faults`
//! cargo feature, which only the workspace's `tests` crate enables. A build made as the
//! README says (`cargo build --release -p evd-ops`) has none of this: the environment
//! variables below are not even named in its binary, and [`switches`] always answers
//! "off".
//!
//! With the feature, each switch is read once, at first use, and announced on stderr
//! when set:
//!
//! - `EVD_TEST_ACK_EARLY` (any value): a deliberately broken agent that acks each valid
//!   line before its event is spooled, so a crash loses acked events. The suite shows
//!   its checker catches that.
//! - `EVD_TEST_DROP_ACKS_PERCENT=<0..=100>`: the acks reader drops that share of acks.
//! - `EVD_TEST_CLOCK_OFFSET_FILE=<path>`: receive time shifted by the milliseconds in
//!   that file ([`crate::clock::FileOffsetClock`]), so a test can move a running agent
//!   or auditor through hours.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The agent's test switches; all off in a build without `test-faults`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AgentSwitches {
    pub ack_early: bool,
    pub drop_acks_percent: u64,
    pub clock_offset_file: Option<PathBuf>,
}

impl AgentSwitches {
    pub fn any(&self) -> bool {
        *self != AgentSwitches::default()
    }
}

/// The switches of this process, read once.
pub fn switches() -> &'static AgentSwitches {
    static SWITCHES: OnceLock<AgentSwitches> = OnceLock::new();
    SWITCHES.get_or_init(|| {
        let switches = from_env();
        if switches.any() {
            tracing::warn!("TEST FAULT SWITCHES ACTIVE (test build): {switches:?}");
        }
        switches
    })
}

#[cfg(feature = "test-faults")]
fn from_env() -> AgentSwitches {
    AgentSwitches {
        ack_early: std::env::var_os("EVD_TEST_ACK_EARLY").is_some(),
        drop_acks_percent: std::env::var("EVD_TEST_DROP_ACKS_PERCENT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0u64)
            .min(100),
        clock_offset_file: std::env::var_os("EVD_TEST_CLOCK_OFFSET_FILE").map(PathBuf::from),
    }
}

#[cfg(not(feature = "test-faults"))]
fn from_env() -> AgentSwitches {
    AgentSwitches::default()
}
