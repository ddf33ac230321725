//! Retry delays: exponential with jitter, on `backon`'s schedule. Each retry loop of
//! evd takes its delays from [`delays`], so a fleet of agents or consumers that failed
//! together does not retry together.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays starting at `first`, doubling up to `max`, each plus a random jitter of up
/// to itself; endless (the caller decides when to give up).
pub fn delays(first: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let ms = |d: Duration| d.as_millis() as u64;
        let got: Vec<u64> = delays(Duration::from_millis(100), Duration::from_secs(1))
            .take(8)
            .map(ms)
            .collect();
        for (i, d) in got.iter().enumerate() {
            let base = (100u64 << i).min(1_000);
            assert!(
                (base..=2 * base).contains(d),
                "delay {i}: {d} ms, base {base}: {got:?}"
            );
        }
        let spread: std::collections::BTreeSet<u64> = (0..20)
            .map(|_| {
                ms(delays(Duration::from_millis(100), Duration::from_secs(1))
                    .next()
                    .unwrap())
            })
            .collect();
        assert!(spread.len() > 1, "jittered: {spread:?}");
    }
}
