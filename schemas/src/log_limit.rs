//! Rate limiting for repeated log lines (pure: the caller passes the time).
//!
//! A retry loop that fails every 200 ms logs its first failure at once, then at most
//! one line per `every`, saying how many it held back, so an outage reads as a few
//! lines with counts rather than a flood.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LogLimit {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

/// One line per 30 s.
impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new(Duration::from_secs(30))
    }
}

impl LogLimit {
    pub fn new(every: Duration) -> Self {
        LogLimit {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may be logged at `now`;
    /// `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }

    /// Forgets the last line: the next failure (after a success) logs at once.
    pub fn reset(&mut self) {
        self.last = None;
        self.held_back = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_every_200ms_logs_once_per_period_with_counts() {
        let start = Instant::now();
        let mut limit = LogLimit::new(Duration::from_secs(30));
        let mut lines = Vec::new();
        for i in 0..600u64 {
            // Two minutes of a failure every 200 ms.
            if let Some(held) = limit.allow(start + Duration::from_millis(200 * i)) {
                lines.push(held);
            }
        }
        assert_eq!(lines, vec![0, 149, 149, 149]);
        limit.reset();
        assert_eq!(limit.allow(start + Duration::from_secs(121)), Some(0));
    }
}
