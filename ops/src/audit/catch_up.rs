//! Whether the audit-topic reader has read everything that was on the topic when it
//! started. Until it has, the auditor's state may lack announcements and heartbeats
//! that are already written (after an outage longer than a deadline, most of them),
//! so it closes nothing: an hour closed on half the records could close complete.
//!
//! Pure: the shell reports the watermarks it saw at start and the positions it reached.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Partition → the offset the reader must reach (the high watermark at start).
    behind: BTreeMap<i32, i64>,
}

impl CatchUp {
    /// From `(partition, low, high)` watermarks read at start; an empty partition
    /// (`low >= high`) has nothing to read.
    pub fn new(watermarks: impl IntoIterator<Item = (i32, i64, i64)>) -> CatchUp {
        CatchUp {
            behind: watermarks
                .into_iter()
                .filter(|(_, low, high)| low < high)
                .map(|(p, _, high)| (p, high))
                .collect(),
        }
    }

    /// The reader's next offset on `partition` is `next` (a message at `next - 1` was
    /// read, or the consumer's position says so). Returns whether this call completed
    /// the catch-up.
    pub fn on_position(&mut self, partition: i32, next: i64) -> bool {
        let was_behind = !self.behind.is_empty();
        if self
            .behind
            .get(&partition)
            .is_some_and(|&high| next >= high)
        {
            self.behind.remove(&partition);
        }
        was_behind && self.behind.is_empty()
    }

    pub fn caught_up(&self) -> bool {
        self.behind.is_empty()
    }

    /// Partitions still behind, with the offset each must reach.
    pub fn behind(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.behind.iter().map(|(p, h)| (*p, *h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_partitions_need_nothing_and_positions_complete_the_rest() {
        let mut c = CatchUp::new([(0, 5, 5), (1, 0, 3), (2, 10, 12)]);
        assert!(!c.caught_up());
        assert!(!c.on_position(1, 2));
        assert!(!c.on_position(1, 3));
        assert!(!c.on_position(7, 100), "unknown partitions change nothing");
        assert!(c.on_position(2, 12), "the last partition completes it");
        assert!(c.caught_up());
        assert!(!c.on_position(2, 13), "completion is reported once");
        assert!(CatchUp::new([]).caught_up());
    }

    proptest! {
        /// Caught up exactly when every non-empty partition reached its high mark, in
        /// any order of positions.
        #[test]
        fn caught_up_iff_every_partition_reached_its_mark(
            marks in prop::collection::vec((0i64..50, 0i64..50), 0..6),
            steps in prop::collection::vec((0usize..6, 0i64..60), 0..40),
        ) {
            let watermarks: Vec<(i32, i64, i64)> =
                marks.iter().enumerate().map(|(p, (l, h))| (p as i32, *l, *h)).collect();
            let mut c = CatchUp::new(watermarks.clone());
            let mut reached = vec![i64::MIN; watermarks.len()];
            for (p, next) in steps {
                if p < watermarks.len() {
                    c.on_position(p as i32, next);
                    reached[p] = reached[p].max(next);
                }
            }
            let expected = watermarks.iter().all(|(p, l, h)| l >= h || reached[*p as usize] >= *h);
            prop_assert_eq!(c.caught_up(), expected);
        }
    }
}
