//! The wall clock, read in one place for every role's timestamps (flush ids,
//! manifests, acks, metrics). Cores take times as arguments instead of calling this;
//! shells that tests must move through hours take a [`Clock`].

/// Time behind a trait so tests can move receive time (hour bucketing, closing).
pub trait Clock: Send + Sync + 'static {
    /// µs since the Unix epoch.
    fn now_us(&self) -> i64;
    fn now_ms(&self) -> i64 {
        self.now_us().div_euclid(1000)
    }
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    }
}

/// Milliseconds since the Unix epoch; 0 if the system clock is before it.
pub fn unix_now_ms() -> i64 {
    SystemClock.now_ms()
}
