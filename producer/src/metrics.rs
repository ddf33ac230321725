//! The agent's figures, exposed through the shared [`Scrape`]: names are listed in
//! docs/metrics.md, and a test keeps the two the same.

use evd_schemas::metrics::{Latency, Scrape};
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! figures {
    ($($kind:ident $name:ident: $help:literal),* $(,)?) => {
        /// Counters and gauges shared by the agent's tasks, and its latency histograms.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
            /// Socket line read → its ack written, after the fsync (per read chunk).
            pub client_ack_seconds: Latency,
            /// One produce request until Kafka confirmed it, retries included.
            pub kafka_produce_seconds: Latency,
            /// A batch sealed → its end-to-end ack received (it reached Parquet).
            pub end_to_end_ack_seconds: Latency,
            /// The tailer's per-source and per-file figures, as of its last poll.
            pub tail: std::sync::Mutex<Option<TailFigures>>,
        }

        impl Metrics {
            fn scrape_scalars(&self, s: &mut Scrape) {
                $( figures!(@one s, $kind, stringify!($name), $help, self.$name.load(Ordering::Relaxed)); )*
            }
        }
    };
    (@one $s:ident, counter, $name:expr, $help:literal, $v:expr) => { $s.counter($name, $help, &[], $v) };
    (@one $s:ident, gauge, $name:expr, $help:literal, $v:expr) => { $s.gauge($name, $help, &[], $v as i64) };
}

figures! {
    gauge ready: "1 once the socket accepts and the spool is open: the agent can take events.",
    counter events_accepted: "Events durably spooled and acked to their client.",
    counter refused_json: "Lines refused: not a JSON event object.",
    counter refused_unknown_type: "Lines refused: unknown event type.",
    counter refused_schema: "Lines refused: schema violation.",
    counter refused_too_large: "Lines refused: longer than max_line_bytes.",
    counter refused_spool_full: "Lines refused: spool full (its size limit, or the disk under it nearly full).",
    counter refused_peer: "Connections refused by the uid/gid allow-list.",
    counter duplicate_ids: "Lines answered with an earlier copy's seq (client event_id resent).",
    counter batches_sealed: "Batches sealed.",
    counter batches_sent: "Batch sends confirmed by Kafka (including retransmits).",
    counter batches_retransmitted: "Batches sent again after the ack timeout or a restart.",
    counter batches_acked: "Batches acked end to end and freed.",
    counter acks_other_spool: "Acks for this agent id but another spool incarnation; they free nothing (a second host with this id, or acks for a wiped spool).",
    gauge acks_topic_missing: "1 while the acks topic's partitions are unknown (the topic is missing or the cluster does not answer): no ack can arrive and the spool cannot free.",
    counter acks_records_read: "Records read from this agent's partition of the acks topic (its own acks and those of agents sharing the partition).",
    counter acks_unauthenticated: "Acks keyed to this agent refused: undecodable, or their tag does not verify under this agent's key (forged, another agent's, an unauthenticated old version); they free nothing.",
    counter kafka_errors: "Kafka produce errors (retried).",
    gauge sends_waiting: "Batches waiting for a send slot.",
    gauge sends_in_flight: "Batches being sent to Kafka.",
    gauge send_bytes_held: "Bytes of waiting batches kept in memory, at most 32 MiB.",
    counter kafka_permanent_errors: "Produce errors a retry cannot cure (message too large, topic missing, not authorized); the batch stays in the spool and is retried after retransmit_after_ms.",
    counter kafka_producer_recreated: "Producers recreated after a fatal error.",
    gauge spool_bytes: "Bytes held in the spool.",
    gauge spool_segments: "Spool segment files.",
    gauge spool_unacked_batches: "Sealed batches waiting for an ack.",
    gauge spool_oldest_unacked_age_seconds: "Age of the oldest unacked batch.",
    counter spool_lost_events_at_recovery: "Events found lost to spool corruption at start.",
    counter spool_corrupt_sealed_reads: "Sealed frames whose CRC failed when read again for a send (changed on disk); the batch was not sent.",
    counter fsyncs: "Spool fsyncs (group commits).",
    counter spool_disk_full_deferrals: "Sealed or acked frames that did not fit on a disk another process filled; retried every turn.",
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
        let mut s = Scrape::new();
        self.scrape_scalars(&mut s);
        s.histogram(
            "client_ack_seconds",
            "Time from reading a socket line to writing its ack, after the fsync (one observation per read chunk of lines).",
            &self.client_ack_seconds,
        );
        s.histogram(
            "kafka_produce_seconds",
            "Time for Kafka to confirm one produce (batch or announcement), retries included.",
            &self.kafka_produce_seconds,
        );
        s.histogram(
            "end_to_end_ack_seconds",
            "Time from sealing a batch to receiving its end-to-end ack (its events committed to Parquet).",
            &self.end_to_end_ack_seconds,
        );
        if let Some(tail) = self.tail.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            tail.scrape(&mut s);
        }
        s.render("agent")
    }
}

/// What the tailer reports at each poll.
#[derive(Debug, Clone, Default)]
pub struct TailFigures {
    pub files_watched: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub open_errors: u64,
    pub sources: Vec<SourceFigures>,
    /// (path, file size minus the durable position)
    pub files: Vec<(String, u64)>,
}

/// One `[[sources]]` entry's counts.
#[derive(Debug, Clone, Default)]
pub struct SourceFigures {
    pub source: String,
    pub event_type: String,
    pub bytes: u64,
    pub lines: u64,
    /// (reason, lines refused)
    pub refused: Vec<(&'static str, u64)>,
}

impl TailFigures {
    fn scrape(&self, s: &mut Scrape) {
        s.gauge(
            "tail_files_watched",
            "Files the tailer has open.",
            &[],
            self.files_watched as i64,
        );
        for (name, help, v) in [
            (
                "tail_rotations",
                "Tailed files rotated away or deleted.",
                self.rotations,
            ),
            (
                "tail_truncations",
                "Tailed files found truncated or rewritten.",
                self.truncations,
            ),
            (
                "tail_open_errors",
                "Files a pattern matched that could not be opened.",
                self.open_errors,
            ),
        ] {
            s.counter(name, help, &[], v);
        }
        for src in &self.sources {
            let labels = [
                ("source", src.source.as_str()),
                ("event_type", src.event_type.as_str()),
            ];
            s.counter(
                "tail_bytes_read",
                "Bytes read per source.",
                &labels,
                src.bytes,
            );
            s.counter(
                "tail_lines_read",
                "Lines read per source.",
                &labels,
                src.lines,
            );
            for (reason, n) in &src.refused {
                let labels = [labels[0], labels[1], ("reason", reason)];
                s.counter(
                    "tail_lines_refused",
                    "Lines refused per source and reason.",
                    &labels,
                    *n,
                );
            }
        }
        for (path, behind) in &self.files {
            s.gauge(
                "tail_bytes_behind",
                "File size minus the durable position, per file.",
                &[("file", path.as_str())],
                *behind as i64,
            );
        }
    }
}
