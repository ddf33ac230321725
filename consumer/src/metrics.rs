//! The consumer's counters, rendered as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
        }

        impl Metrics {
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP evd_consumer_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "evd_consumer_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

counters! {
    ready: "1 once the consumer has joined its group and been given its partitions (gauge).",
    batches_consumed: "Kafka messages read.",
    events_written: "Rows committed to Parquet.",
    files_written: "Parquet files committed.",
    bytes_written: "Parquet bytes committed.",
    duplicates_dropped: "Batches dropped because the ledger already holds them.",
    quarantined_batches: "Batches quarantined (bad tag, unknown key, corrupt payload, ...).",
    quarantined_events: "Events quarantined (schema violations).",
    flushes: "Committed flushes.",
    flushes_fenced: "Flushes abandoned at the commit point: this consumer lost its partitions, or another manifest committed their batches (the zombie fence).",
    commit_latency_ms_last: "Duration of the last flush commit (gauge).",
    oldest_uncommitted_received_at_ms: "Receive time of the oldest buffered event; 0 = none (gauge). Lag in time = now - this.",
    acks_sent: "Ack messages published.",
    store_retries: "Object-store requests (and whole commits) that failed and were retried.",
    corrupt_manifests: "Live manifests that did not parse at recovery and were moved to _evd/corrupt/manifests/ (a store that lost part of a write).",
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
