//! Time behind a trait so tests can move receive time (hour bucketing, closing).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// µs since the Unix epoch.
    fn now_us(&self) -> i64;
    fn now_ms(&self) -> i64 {
        self.now_us().div_euclid(1000)
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

/// System time plus an adjustable offset (tests jump hours without waiting).
#[derive(Clone, Default)]
pub struct OffsetClock(Arc<AtomicI64>);

impl OffsetClock {
    pub fn advance_us(&self, by: i64) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_us(&self) -> i64 {
        SystemClock.now_us() + self.0.load(Ordering::SeqCst)
    }
}
