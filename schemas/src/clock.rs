//! The wall clock, read in one place for every role's timestamps (flush ids,
//! manifests, acks, metrics). Cores take times as arguments instead of calling this.

/// Milliseconds since the Unix epoch; 0 if the system clock is before it.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
