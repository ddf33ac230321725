//! Sans-IO bookkeeping of one route: which source offsets are forwarded and
//! delivered, how far each partition may be committed, and whether the offsets a
//! partition yields are continuous (a gap is a silent skip, a step back a reset).
//!
//! Contract: an offset is committable only when it and every offset before it that
//! this route sent are delivered by the destination, so a commit never passes a
//! record the destination does not hold.

use std::collections::{BTreeMap, BTreeSet};

/// A source partition.
pub type Tp = (String, i32);

/// What one record's offset says about its partition's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The next offset, or the first with nothing to compare it with.
    InOrder,
    /// Offsets `expected..got` were never seen: retention deleted them before they
    /// were forwarded, or the consumer's position was reset past them.
    Skipped { expected: i64, got: i64 },
    /// Offsets went back: the topic was deleted and recreated (or its offsets reset).
    Reset { expected: i64, got: i64 },
}

#[derive(Debug, Default)]
struct Partition {
    /// The offset the next record should have.
    expected: Option<i64>,
    /// Sent, not yet delivered.
    in_flight: BTreeSet<i64>,
    last_sent: Option<i64>,
    /// The last offset committed (the next offset to read).
    committed: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    parts: BTreeMap<Tp, Partition>,
}

impl Tracker {
    /// True if the partition's first record is next: the shell looks up the group's
    /// committed offset to pass to `observe`.
    pub fn needs_start(&self, tp: &Tp) -> bool {
        self.parts.get(tp).is_none_or(|p| p.expected.is_none())
    }

    /// Checks a record's offset against what came before (or, for a partition's first
    /// record, against the group's committed offset).
    pub fn observe(&mut self, tp: &Tp, offset: i64, committed: Option<i64>) -> Continuity {
        let p = self.parts.entry(tp.clone()).or_default();
        let expected = p.expected.or(committed);
        p.expected = Some(offset + 1);
        match expected {
            Some(e) if offset > e => Continuity::Skipped {
                expected: e,
                got: offset,
            },
            Some(e) if offset < e => {
                // A new history: what was in flight belongs to the old one.
                p.in_flight.clear();
                p.last_sent = None;
                p.committed = None;
                Continuity::Reset {
                    expected: e,
                    got: offset,
                }
            }
            _ => Continuity::InOrder,
        }
    }

    /// The record at `offset` was handed to the producer.
    pub fn sent(&mut self, tp: &Tp, offset: i64) {
        let p = self.parts.entry(tp.clone()).or_default();
        p.in_flight.insert(offset);
        p.last_sent = Some(offset);
    }

    /// The destination acknowledged the record at `offset`.
    pub fn delivered(&mut self, tp: &Tp, offset: i64) {
        if let Some(p) = self.parts.get_mut(tp) {
            p.in_flight.remove(&offset);
        }
    }

    /// Offsets to commit (the next offset to read), per partition whose commit point
    /// moved since the last `mark_committed`.
    pub fn committable(&self) -> Vec<(Tp, i64)> {
        self.parts
            .iter()
            .filter_map(|(tp, p)| {
                let next = match p.in_flight.first() {
                    Some(&oldest) => oldest,
                    None => p.last_sent? + 1,
                };
                (p.committed != Some(next) && p.last_sent.is_some()).then(|| (tp.clone(), next))
            })
            .filter(|(tp, next)| {
                // Never commit below what is already committed.
                self.parts[tp].committed.is_none_or(|c| *next > c)
            })
            .collect()
    }

    pub fn mark_committed(&mut self, tp: &Tp, next: i64) {
        if let Some(p) = self.parts.get_mut(tp) {
            p.committed = Some(next);
        }
    }

    /// Records sent but not yet delivered, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.parts.values().map(|p| p.in_flight.len()).sum()
    }

    /// The partition left this route (rebalance): its state goes with it.
    pub fn forget(&mut self, tp: &Tp) {
        self.parts.remove(tp);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tp() -> Tp {
        ("t".into(), 0)
    }

    #[test]
    fn gaps_and_steps_back_are_reported() {
        let mut t = Tracker::default();
        assert_eq!(t.observe(&tp(), 5, Some(5)), Continuity::InOrder);
        assert_eq!(t.observe(&tp(), 6, None), Continuity::InOrder);
        assert_eq!(
            t.observe(&tp(), 9, None),
            Continuity::Skipped {
                expected: 7,
                got: 9
            }
        );
        assert_eq!(
            t.observe(&tp(), 0, None),
            Continuity::Reset {
                expected: 10,
                got: 0
            }
        );
        let mut fresh = Tracker::default();
        assert_eq!(
            fresh.observe(&tp(), 40, Some(10)),
            Continuity::Skipped {
                expected: 10,
                got: 40
            }
        );
        assert_eq!(
            Tracker::default().observe(&tp(), 40, None),
            Continuity::InOrder
        );
    }

    proptest! {
        /// Whatever order deliveries come in, a commit never passes an undelivered
        /// offset, and once all are delivered the commit reaches the end.
        #[test]
        fn commits_never_pass_an_undelivered_record(
            n in 1i64..60,
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..60),
        ) {
            let mut t = Tracker::default();
            for o in 0..n {
                t.observe(&tp(), o, None);
                t.sent(&tp(), o);
            }
            let mut left: Vec<i64> = (0..n).collect();
            for idx in order {
                if left.is_empty() {
                    break;
                }
                let o = left.remove(idx.index(left.len()));
                t.delivered(&tp(), o);
                for (p, next) in t.committable() {
                    prop_assert!(left.iter().all(|&u| u >= next), "commit {next} passes {left:?}");
                    t.mark_committed(&p, next);
                }
            }
            for o in left.drain(..) {
                t.delivered(&tp(), o);
            }
            let c = t.committable();
            prop_assert!(c.is_empty() || c == vec![(tp(), n)]);
            prop_assert_eq!(t.in_flight(), 0);
        }
    }
}
