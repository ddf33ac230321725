//! Which closed hours still need their combined file, and when to try each again.
//! Pure: the shell (`combine::run`) offers the closed hours it sees, asks what is due
//! at `now_ms`, and reports each attempt's end.
//!
//! Contract: an hour offered once stays known until pruned, so it is attempted until
//! it is finished; a failed attempt waits [`retry_delay_ms`] before the next (doubling
//! from [`FIRST_RETRY_MS`] to [`MAX_RETRY_MS`]); due hours come oldest first.

use std::collections::BTreeMap;

use evd_schemas::Hour;

use crate::audit::{CellState, MarkerFile};

/// The first wait after a failed attempt.
pub const FIRST_RETRY_MS: i64 = 10_000;
/// The longest wait between attempts.
pub const MAX_RETRY_MS: i64 = 15 * 60_000;

/// One closed hour to combine: its marker's state and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub event_type: String,
    pub hour: Hour,
    pub state: CellState,
    pub files: Vec<MarkerFile>,
}

#[derive(Debug)]
enum Entry {
    Waiting {
        job: Job,
        failures: u32,
        not_before_ms: i64,
    },
    Finished,
}

/// Closed hours by (hour, type), so the oldest hour is tried first.
#[derive(Debug, Default)]
pub struct CombineQueue {
    hours: BTreeMap<(Hour, String), Entry>,
}

/// The wait after the `failures`th failed attempt in a row.
pub fn retry_delay_ms(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(20);
    (FIRST_RETRY_MS << doublings).min(MAX_RETRY_MS)
}

impl CombineQueue {
    pub fn knows(&self, event_type: &str, hour: Hour) -> bool {
        self.hours.contains_key(&(hour, event_type.to_string()))
    }

    /// Adds a closed hour, due at once; an hour known already is left as it is.
    pub fn offer(&mut self, job: Job) {
        let key = (job.hour, job.event_type.clone());
        self.hours.entry(key).or_insert(Entry::Waiting {
            job,
            failures: 0,
            not_before_ms: i64::MIN,
        });
    }

    /// The oldest hour due at `now_ms`, if any.
    pub fn due(&self, now_ms: i64) -> Option<&Job> {
        self.hours.values().find_map(|entry| match entry {
            Entry::Waiting {
                job, not_before_ms, ..
            } if *not_before_ms <= now_ms => Some(job),
            _ => None,
        })
    }

    /// The hour needs nothing more (combined, there already, empty or not combinable).
    pub fn finished(&mut self, event_type: &str, hour: Hour) {
        if let Some(entry) = self.hours.get_mut(&(hour, event_type.to_string())) {
            *entry = Entry::Finished;
        }
    }

    /// The attempt failed at `now_ms`: the hour waits before it is due again.
    pub fn failed(&mut self, event_type: &str, hour: Hour, now_ms: i64) {
        if let Some(Entry::Waiting {
            failures,
            not_before_ms,
            ..
        }) = self.hours.get_mut(&(hour, event_type.to_string()))
        {
            *failures = failures.saturating_add(1);
            *not_before_ms = now_ms.saturating_add(retry_delay_ms(*failures));
        }
    }

    /// Forgets hours before `floor` (the auditor's window).
    pub fn prune(&mut self, floor: Hour) {
        self.hours = self.hours.split_off(&(floor, String::new()));
    }

    /// Hours not finished yet.
    pub fn waiting(&self) -> usize {
        self.hours
            .values()
            .filter(|e| matches!(e, Entry::Waiting { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(ty: &str, hour: u32) -> Job {
        Job {
            event_type: ty.into(),
            hour: Hour(hour),
            state: CellState::Complete,
            files: Vec::new(),
        }
    }

    #[test]
    fn oldest_first_retried_after_a_delay_finished_once() {
        let mut q = CombineQueue::default();
        q.offer(job("B", 11));
        q.offer(job("A", 10));
        q.offer(job("B", 10));
        assert_eq!(q.due(0), Some(&job("A", 10)));
        q.failed("A", Hour(10), 1_000);
        assert_eq!(q.due(1_000), Some(&job("B", 10)));
        q.finished("B", Hour(10));
        assert_eq!(q.due(1_000), Some(&job("B", 11)));
        q.finished("B", Hour(11));
        assert_eq!(q.due(1_000 + FIRST_RETRY_MS - 1), None);
        assert_eq!(q.due(1_000 + FIRST_RETRY_MS), Some(&job("A", 10)));
        // Offered again (every pass offers the closed hours): nothing changes.
        q.offer(job("A", 10));
        q.offer(job("B", 10));
        assert_eq!(q.due(1_000), None);
        assert_eq!(q.waiting(), 1);
        q.prune(Hour(11));
        assert!(!q.knows("A", Hour(10)) && q.knows("B", Hour(11)));
        assert_eq!(q.waiting(), 0);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let got: Vec<i64> = (1..=9).map(retry_delay_ms).collect();
        assert_eq!(got[..4], [10_000, 20_000, 40_000, 80_000]);
        assert_eq!(got[8], MAX_RETRY_MS);
        assert_eq!(retry_delay_ms(u32::MAX), MAX_RETRY_MS);
    }

    proptest! {
        /// Whatever the order of offers, failures and completions: an hour is due
        /// only while it is unfinished and its wait has passed, and the one handed out
        /// is the oldest such hour.
        #[test]
        fn due_is_the_oldest_unfinished_hour_whose_wait_passed(
            steps in prop::collection::vec((0u8..3, 0u32..4, 0usize..3, 0i64..100_000), 1..60),
            now in 0i64..2_000_000,
        ) {
            let types = ["A", "B", "C"];
            let mut q = CombineQueue::default();
            // The model: (hour, type) -> Some(not_before) while waiting, None when finished.
            let mut model: BTreeMap<(Hour, String), (Option<i64>, u32)> = BTreeMap::new();
            for (op, hour, ty, at) in steps {
                let key = (Hour(hour), types[ty].to_string());
                match op {
                    0 => {
                        q.offer(job(types[ty], hour));
                        model.entry(key).or_insert((Some(i64::MIN), 0));
                    }
                    1 => {
                        q.failed(types[ty], Hour(hour), at);
                        if let Some((Some(nb), n)) = model.get_mut(&key) {
                            *n += 1;
                            *nb = at + retry_delay_ms(*n);
                        }
                    }
                    _ => {
                        q.finished(types[ty], Hour(hour));
                        if let Some(e) = model.get_mut(&key) {
                            e.0 = None;
                        }
                    }
                }
            }
            let expected = model
                .iter()
                .find(|(_, (nb, _))| nb.is_some_and(|nb| nb <= now))
                .map(|((h, t), _)| job(t, h.0));
            prop_assert_eq!(q.due(now).cloned(), expected);
            let waiting = model.values().filter(|(nb, _)| nb.is_some()).count();
            prop_assert_eq!(q.waiting(), waiting);
        }
    }
}
