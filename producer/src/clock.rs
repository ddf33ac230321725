//! The agent's clocks: the shared [`Clock`] trait and, in test builds, a clock a test
//! switch moves through hours.

pub use evd_schemas::clock::{Clock, SystemClock};

/// The clock a role runs on: the system clock, or in a test build the one a test
/// switch selects ([`crate::test_faults`]).
pub fn system_or_test_clock() -> std::sync::Arc<dyn Clock> {
    match &crate::test_faults::switches().clock_offset_file {
        Some(path) => std::sync::Arc::new(FileOffsetClock::new(path.clone())),
        None => std::sync::Arc::new(SystemClock),
    }
}

/// System time plus an offset in ms read from a file (re-read at most every 50 ms).
/// For end-to-end tests that move a running agent through hours:
/// Selected by a test switch ([`crate::test_faults`]) in `evd agent` and `evd ops`.
pub struct FileOffsetClock {
    path: std::path::PathBuf,
    cached: std::sync::Mutex<(std::time::Instant, i64)>,
}

impl FileOffsetClock {
    pub fn new(path: std::path::PathBuf) -> Self {
        let offset = Self::read(&path);
        FileOffsetClock {
            path,
            cached: std::sync::Mutex::new((std::time::Instant::now(), offset)),
        }
    }

    fn read(path: &std::path::Path) -> i64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Clock for FileOffsetClock {
    fn now_us(&self) -> i64 {
        let mut cached = self.cached.lock().expect("clock lock");
        if cached.0.elapsed() > std::time::Duration::from_millis(50) {
            *cached = (std::time::Instant::now(), Self::read(&self.path));
        }
        SystemClock.now_us() + cached.1 * 1000
    }
}
