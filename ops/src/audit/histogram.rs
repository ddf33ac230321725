//! A fixed-bucket histogram (seconds), exported as a metric and shown in the dashboard.

use serde::Serialize;

/// Upper bounds in seconds; a last implicit bucket is `+Inf`.
pub const BOUNDS_S: [f64; 10] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    pub counts: [u64; BOUNDS_S.len() + 1],
    pub sum_s: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe_ms(&mut self, ms: i64) {
        let s = ms.max(0) as f64 / 1000.0;
        let i = BOUNDS_S
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BOUNDS_S.len());
        self.counts[i] += 1;
        self.sum_s += s;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_s += other.sum_s;
        self.count += other.count;
    }

    /// The smallest bucket bound below which at least `q` of the observations fall.
    pub fn quantile_bound_s(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let target = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(BOUNDS_S.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    /// Sum, count and non-cumulative counts by upper bound (the last `f64::MAX`,
    /// i.e. `+Inf`), as the shared exposition takes them.
    pub fn exposition(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let bounds = BOUNDS_S.iter().copied().chain([f64::MAX]);
        (self.sum_s, self.count, bounds.zip(self.counts).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let mut h = Histogram::default();
        for ms in [500, 2_000, 2_000, 70_000] {
            h.observe_ms(ms);
        }
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 2);
        assert_eq!(h.counts[4], 1);
        assert_eq!(h.quantile_bound_s(0.5), Some(5.0));
        assert_eq!(h.quantile_bound_s(1.0), Some(300.0));
        let (sum, count, buckets) = h.exposition();
        assert_eq!((sum, count), (74.5, 4));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 0)));
        assert_eq!(buckets[4], (300.0, 1));
    }
}
