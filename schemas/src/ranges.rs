//! A set of `u64` sequence numbers kept as sorted, disjoint, inclusive ranges.
//!
//! Acks and audit records carry batch seq ranges; the consumer's dedup ledger keeps one
//! set per agent. Memory is proportional to the number of gaps, not of seqs.

use std::collections::BTreeMap;

/// Sorted, disjoint, non-adjacent inclusive ranges. Invariant: for consecutive entries
/// `(a1, b1)`, `(a2, b2)`: `a1 <= b1` and `b1 + 1 < a2`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRanges {
    // first -> last (inclusive)
    ranges: BTreeMap<u64, u64>,
}

impl SeqRanges {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from ranges in any order; overlapping and adjacent ranges merge.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut set = Self::new();
        for (first, last) in ranges {
            set.insert_range(first, last);
        }
        set
    }

    pub fn insert(&mut self, seq: u64) -> bool {
        let added = !self.contains(seq);
        self.insert_range(seq, seq);
        added
    }

    /// Inserts `first..=last`. Ranges with `first > last` are ignored.
    pub fn insert_range(&mut self, first: u64, last: u64) {
        if first > last {
            return;
        }
        let (mut lo, mut hi) = (first, last);
        // Merge with a range that starts before `first` and reaches it (or touches it).
        if let Some((&a, &b)) = self.ranges.range(..=first).next_back()
            && b.saturating_add(1) >= first
        {
            lo = a;
            hi = hi.max(b);
        }
        // Swallow every range that starts inside (or right after) `lo..=hi`.
        loop {
            let next = self
                .ranges
                .range(lo..)
                .next()
                .map(|(&a, &b)| (a, b))
                .filter(|&(a, _)| a <= hi.saturating_add(1));
            match next {
                Some((a, b)) => {
                    self.ranges.remove(&a);
                    hi = hi.max(b);
                }
                None => break,
            }
        }
        self.ranges.insert(lo, hi);
    }

    /// Removes `first..=last` (seqs not in the set are ignored).
    pub fn remove_range(&mut self, first: u64, last: u64) {
        if first > last {
            return;
        }
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(..=last)
            .rev()
            .take_while(|&(_, &b)| b >= first)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in overlapping {
            self.ranges.remove(&a);
            if a < first {
                self.ranges.insert(a, first - 1);
            }
            if b > last {
                self.ranges.insert(last + 1, b);
            }
        }
    }

    /// How many seqs the two sets share.
    pub fn intersection_count(&self, other: &SeqRanges) -> u64 {
        let (small, large) = if self.range_count() <= other.range_count() {
            (self, other)
        } else {
            (other, self)
        };
        let mut n = 0;
        for (a, b) in small.iter() {
            for (c, d) in large.ranges.range(..=b).rev().take_while(|&(_, &d)| d >= a) {
                n += d.min(&b) - c.max(&a) + 1;
            }
        }
        n
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.ranges
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &last)| seq <= last)
    }

    /// True when every seq of `first..=last` is in the set.
    pub fn contains_range(&self, first: u64, last: u64) -> bool {
        first <= last
            && self
                .ranges
                .range(..=first)
                .next_back()
                .is_some_and(|(_, &end)| last <= end)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of ranges (not of seqs).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// Number of seqs in the set.
    pub fn seq_count(&self) -> u64 {
        self.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&a, &b)| (a, b))
    }

    /// The ranges of `first..=last` that are *not* in the set.
    pub fn gaps_within(&self, first: u64, last: u64) -> SeqRanges {
        let mut gaps = SeqRanges::new();
        let mut next = first;
        for (a, b) in self.iter() {
            if b < next {
                continue;
            }
            if a > last {
                break;
            }
            if a > next {
                gaps.insert_range(next, a - 1);
            }
            match b.checked_add(1) {
                Some(n) => next = n,
                None => return gaps,
            }
        }
        if next <= last {
            gaps.insert_range(next, last);
        }
        gaps
    }
}

impl std::fmt::Display for SeqRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        for (a, b) in self.iter() {
            if a == b {
                write!(f, "{sep}{a}")?;
            } else {
                write!(f, "{sep}{a}-{b}")?;
            }
            sep = ",";
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn adjacent_ranges_merge() {
        let set = SeqRanges::from_ranges([(5, 7), (1, 2), (3, 4), (9, 9)]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(1, 7), (9, 9)]);
        assert_eq!(set.to_string(), "1-7,9");
        assert_eq!(set.gaps_within(0, 10).to_string(), "0,8,10");
    }

    proptest! {
        /// The range set behaves like a plain set of integers.
        #[test]
        fn behaves_like_a_set(ops in prop::collection::vec((0u64..200, 0u64..8, any::<bool>()), 0..60)) {
            let mut model = BTreeSet::new();
            let mut set = SeqRanges::new();
            for (first, len, remove) in ops {
                if remove {
                    set.remove_range(first, first + len);
                    for s in first..=first + len {
                        model.remove(&s);
                    }
                } else {
                    set.insert_range(first, first + len);
                    model.extend(first..=first + len);
                }
            }
            let evens = SeqRanges::from_ranges((0..110).map(|i| (2 * i, 2 * i)));
            let shared = model.iter().filter(|s| *s % 2 == 0 && **s < 220).count() as u64;
            prop_assert_eq!(set.intersection_count(&evens), shared);
            prop_assert_eq!(evens.intersection_count(&set), shared);
            prop_assert_eq!(set.seq_count(), model.len() as u64);
            for seq in 0..220 {
                prop_assert_eq!(set.contains(seq), model.contains(&seq));
            }
            let pairs: Vec<_> = set.iter().collect();
            for w in pairs.windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0, "not canonical: {:?}", pairs);
            }
            let gaps = set.gaps_within(0, 210);
            for seq in 0..=210 {
                prop_assert_eq!(gaps.contains(seq), !model.contains(&seq));
            }
        }
    }
}
