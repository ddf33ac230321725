//! The consumer's figures, exposed through the shared [`Scrape`]: names are listed in
//! docs/metrics.md, and a test keeps the two the same.

use evd_schemas::metrics::{Latency, Scrape};
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! figures {
    ($($kind:ident $name:ident: $help:literal),* $(,)?) => {
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
            /// One flush: Parquet written, manifest committed, offsets and acks sent.
            pub flush_seconds: Latency,
        }

        impl Metrics {
            pub fn render(&self) -> String {
                let mut s = Scrape::new();
                $(
                    let v = self.$name.load(Ordering::Relaxed);
                    figures!(@one s, $kind, stringify!($name), $help, v);
                )*
                s.histogram(
                    "flush_seconds",
                    "Time of one flush: Parquet files written, the manifest committed, offsets committed and acks sent.",
                    &self.flush_seconds,
                );
                s.render("consumer")
            }
        }
    };
    (@one $s:ident, counter, $name:expr, $help:literal, $v:expr) => { $s.counter($name, $help, &[], $v) };
    (@one $s:ident, gauge, $name:expr, $help:literal, $v:expr) => { $s.gauge($name, $help, &[], $v as i64) };
}

figures! {
    gauge ready: "1 once the consumer has joined its group and been given its partitions.",
    gauge assigned_partitions: "Partitions the group gave this consumer; 0 between a revoke and the next assignment. 0 for long while the group has work means its rebalance does not complete.",
    counter batches_consumed: "Kafka messages read.",
    counter events_written: "Rows committed to Parquet.",
    counter files_written: "Parquet files committed.",
    counter bytes_written: "Parquet bytes committed.",
    counter duplicates_dropped: "Batches dropped because the ledger already holds them.",
    counter quarantined_batches: "Batches quarantined (bad tag, unknown key, corrupt payload, ...).",
    counter quarantined_events: "Events quarantined (schema violations).",
    counter flushes: "Committed flushes.",
    counter flushes_fenced: "Flushes abandoned at the commit point: this consumer lost its partitions, or another manifest committed their batches (the zombie fence).",
    gauge oldest_uncommitted_received_timestamp_seconds: "Receive time (Unix seconds) of the oldest buffered event; 0 = none. Lag in time = now - this.",
    counter acks_sent: "Ack messages published.",
    counter store_retries: "Object-store requests (and whole commits) that failed and were retried.",
    counter corrupt_manifests: "Live manifests that did not parse at recovery and were moved to _evd/corrupt/manifests/ (a store that lost part of a write).",
}

impl Metrics {
    /// Ready once the consumer has joined its group (`/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        match self.ready.load(Ordering::Relaxed) {
            0 => Err("recovering the ledger or joining the consumer group".into()),
            _ => Ok(()),
        }
    }
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub fn set(gauge: &AtomicU64, v: u64) {
    gauge.store(v, Ordering::Relaxed);
}
