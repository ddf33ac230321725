//! The agent's counters, rendered as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// Monotonic counters and gauges shared by the agent's tasks.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
            /// Labelled series a task renders itself (the tailer's per-source and
            /// per-file figures), appended as is.
            pub labelled: std::sync::Mutex<String>,
        }

        impl Metrics {
            fn write_all(&self, out: &mut String) {
                $(
                    let _ = writeln!(out, "# HELP evd_agent_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "evd_agent_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
            }
        }
    };
}

counters! {
    ready: "1 once the socket accepts and the spool is open: the agent can take events (gauge).",
    events_accepted: "Events durably spooled and acked to their client.",
    refused_json: "Lines refused: not a JSON event object.",
    refused_unknown_type: "Lines refused: unknown event type.",
    refused_schema: "Lines refused: schema violation.",
    refused_too_large: "Lines refused: longer than max_line_bytes.",
    refused_spool_full: "Lines refused: spool full (its size limit, or the disk under it nearly full).",
    refused_peer: "Connections refused by the uid/gid allow-list.",
    duplicate_ids: "Lines answered with an earlier copy's seq (client event_id resent).",
    batches_sealed: "Batches sealed.",
    batches_sent: "Batch sends confirmed by Kafka (including retransmits).",
    batches_retransmitted: "Batches sent again after the ack timeout or a restart.",
    batches_acked: "Batches acked end to end and freed.",
    acks_other_spool: "Acks for this agent id but another spool incarnation; they free nothing (a second host with this id, or acks for a wiped spool).",
    acks_topic_missing: "1 while the acks topic's partitions are unknown (the topic is missing or the cluster does not answer): no ack can arrive and the spool cannot free (gauge).",
    acks_records_read: "Records read from this agent's partition of the acks topic (its own acks and those of agents sharing the partition).",
    acks_unauthenticated: "Acks keyed to this agent refused: undecodable, or their tag does not verify under this agent's key (forged, another agent's, an unauthenticated old version); they free nothing.",
    kafka_errors: "Kafka produce errors (retried).",
    sends_waiting: "Batches waiting for a send slot (gauge).",
    sends_in_flight: "Batches being sent to Kafka (gauge).",
    send_bytes_held: "Bytes of waiting batches kept in memory, at most 32 MiB (gauge).",
    kafka_permanent_errors: "Produce errors a retry cannot cure (message too large, topic missing, not authorized); the batch stays in the spool and is retried after retransmit_after_ms.",
    kafka_producer_recreated: "Producers recreated after a fatal error.",
    spool_bytes: "Bytes held in the spool (gauge).",
    spool_segments: "Spool segment files (gauge).",
    spool_unacked_batches: "Sealed batches waiting for an ack (gauge).",
    spool_oldest_unacked_age_ms: "Age of the oldest unacked batch (gauge).",
    spool_lost_events_at_recovery: "Events found lost to spool corruption at start.",
    spool_corrupt_sealed_reads: "Sealed frames whose CRC failed when read again for a send (changed on disk); the batch was not sent.",
    fsyncs: "Spool fsyncs (group commits).",
    spool_disk_full_deferrals: "Sealed or acked frames that did not fit on a disk another process filled; retried every turn.",
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Ready once the socket accepts and the spool is open (`/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        match self.ready.load(Ordering::Relaxed) {
            0 => Err("the spool is being recovered or the socket is not bound yet".into()),
            _ => Ok(()),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write_all(&mut out);
        out.push_str(&self.labelled.lock().expect("metrics lock"));
        out
    }
}
