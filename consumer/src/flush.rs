//! The flush core: what one flush holds and what it commits. Pure: no I/O, no clock
//! (callers pass `now`), no Kafka or object-store types.
//!
//! Exactly-once is decided here. A batch offered to a [`FlushBuilder`] is
//!
//! - [`Offered::Committed`] when the ledger holds it (an earlier flush committed it;
//!   it is acked again, because the agent evidently missed the ack),
//! - [`Offered::InFlush`] when this flush holds it already (a retransmit that arrived
//!   before the flush; the flush's own ack covers it),
//! - [`Offered::Quarantine`] when this consumer's registry does not know its type,
//! - [`Offered::Added`] otherwise: its rows are buffered and it is listed in the
//!   flush's batches.
//!
//! [`FlushBuilder::seal`] turns everything held into a [`Sealed`] flush: the manifest
//! (the commit point), the staged Parquet files, the schema-quarantine document, the
//! Kafka offsets to commit and the acks to send, in that order, by the shell. A sealed
//! flush whose commit is refused (the fence) is dropped whole and its partitions are
//! rewound to [`Sealed::first_offsets`]: its batches are read again and offered to a
//! builder whose ledger then says whether they were committed elsewhere.
//!
//! So a batch is in at most one manifest as long as the ledger a builder consults
//! holds every manifest committed before the builder's own commit point — which is
//! what the shell's fence (`commit_fenced`) makes true.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use bytes::Bytes;
use evd_schemas::wire::batch::OpenedBatch;
use evd_schemas::{Hour, Origin, Registry, SeqRanges};

use crate::layout;
use crate::ledger::{
    AgentBatches, Delivered, FileEntry, Ledger, MANIFEST_VERSION, Manifest, OffsetEntry,
};
use crate::rows::{Assembler, RejectedEvent};

/// A Kafka partition: `(topic, partition)`.
pub type Partition = (String, i32);

/// What offering one opened batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// An earlier flush committed it: nothing buffered; acked again (see
    /// [`FlushBuilder::take_reacks`]).
    Committed,
    /// This flush holds it already: nothing to do.
    InFlush,
    /// Rows buffered; `rejected` events failed validation and go to quarantine.
    Added { rows: usize, rejected: usize },
    /// Not deliverable here: the raw batch goes to quarantine under `reason`.
    Quarantine {
        reason: &'static str,
        detail: String,
    },
}

/// When a flush is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
    /// Age of the flush's first message.
    pub max_age: Duration,
}

/// Deliberate consumer bugs for the reliability suite (`test_faults`); both off
/// outside test builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryFaults {
    /// Write batches the ledger already holds.
    pub skip_dedup: bool,
    /// Claim batches with this seq delivered without writing their rows.
    pub lose_batch_seq: Option<u64>,
}

/// One flush's contents, ready for the commit protocol.
#[derive(Debug)]
pub struct Sealed {
    pub manifest: Manifest,
    /// `(staging path, Parquet bytes)`, as the manifest's `files` list them.
    pub staged: Vec<(String, Bytes)>,
    /// The schema-quarantine document (`_quarantine/schema/<flush_id>.jsonl`), already
    /// named in the manifest's `quarantine`; put before the commit point.
    pub rejected: Option<(String, Bytes)>,
    /// Batches to ack once the manifest exists.
    pub acks: BTreeMap<Origin, SeqRanges>,
    /// The next offset to read per partition: committed once the manifest exists
    /// (the manifest lists them too, as a hint).
    pub offsets: BTreeMap<Partition, i64>,
    /// Where the flush's partitions began: rewind there if it is not committed.
    pub first_offsets: BTreeMap<Partition, i64>,
    /// Rows in the staged files.
    pub rows: u64,
}

/// Per (agent, type, hour): rows, rejected events, batches.
type DeliveredCounts = BTreeMap<(Origin, String, Hour), (u64, u64, SeqRanges)>;

/// The flush being built. See the module docs for the contract.
pub struct FlushBuilder {
    consumer_id: String,
    /// Makes flush ids unique across restarts of one consumer id.
    start_ms: i64,
    flushes: u64,
    faults: DeliveryFaults,
    assembler: Assembler,
    batches: BTreeMap<Origin, SeqRanges>,
    delivered: DeliveredCounts,
    rejected: Vec<RejectedEvent>,
    quarantine: Vec<String>,
    /// Next offset to read, per partition.
    offsets: BTreeMap<Partition, i64>,
    first_offsets: BTreeMap<Partition, i64>,
    oldest_received_us: Option<i64>,
    opened_at: Option<Instant>,
    reacks: BTreeMap<Origin, SeqRanges>,
}

impl FlushBuilder {
    pub fn new(consumer_id: &str, start_ms: i64, faults: DeliveryFaults) -> FlushBuilder {
        FlushBuilder {
            consumer_id: consumer_id.to_string(),
            start_ms,
            flushes: 0,
            faults,
            assembler: Assembler::default(),
            batches: BTreeMap::new(),
            delivered: BTreeMap::new(),
            rejected: Vec::new(),
            quarantine: Vec::new(),
            offsets: BTreeMap::new(),
            first_offsets: BTreeMap::new(),
            oldest_received_us: None,
            opened_at: None,
            reacks: BTreeMap::new(),
        }
    }

    /// Records that the message at `offset` of `partition` belongs to this flush,
    /// whatever becomes of its batch.
    pub fn note_message(&mut self, partition: Partition, offset: i64, now: Instant) {
        self.first_offsets
            .entry(partition.clone())
            .or_insert(offset);
        self.offsets.insert(partition, offset + 1);
        self.opened_at.get_or_insert(now);
    }

    /// Offers an authentic batch (see the module docs).
    pub fn offer(&mut self, ledger: &Ledger, registry: &Registry, opened: &OpenedBatch) -> Offered {
        let meta = &opened.header.meta;
        let origin = meta.origin();
        if ledger.is_committed(&origin, meta.batch_seq) && !self.faults.skip_dedup {
            self.reacks
                .entry(origin)
                .or_default()
                .insert(meta.batch_seq);
            return Offered::Committed;
        }
        if self
            .batches
            .get(&origin)
            .is_some_and(|s| s.contains(meta.batch_seq))
        {
            return Offered::InFlush;
        }
        if self.faults.lose_batch_seq == Some(meta.batch_seq) {
            tracing::warn!("test switch: losing batch {}", meta.batch_seq);
            self.batches
                .entry(origin)
                .or_default()
                .insert(meta.batch_seq);
            return Offered::Added {
                rows: 0,
                rejected: 0,
            };
        }
        let added = match self.assembler.add(registry, opened, meta.bucket_hour) {
            Ok(a) => a,
            Err(detail) => {
                return Offered::Quarantine {
                    reason: "unknown_type",
                    detail,
                };
            }
        };
        self.batches
            .entry(origin.clone())
            .or_default()
            .insert(meta.batch_seq);
        let counts = self
            .delivered
            .entry((origin, meta.event_type.clone(), meta.bucket_hour))
            .or_default();
        counts.0 += added.rows as u64;
        counts.1 += added.rejected.len() as u64;
        counts.2.insert(meta.batch_seq);
        let offered = Offered::Added {
            rows: added.rows,
            rejected: added.rejected.len(),
        };
        self.rejected.extend(added.rejected);
        if let Some(first) = opened.records().first() {
            let t = first.received_at_us;
            self.oldest_received_us = Some(self.oldest_received_us.map_or(t, |o| o.min(t)));
        }
        offered
    }

    /// A quarantine object this flush wrote (a whole batch that could not be opened
    /// or placed); listed in its manifest.
    pub fn note_quarantined(&mut self, name: String) {
        self.quarantine.push(name);
    }

    /// Batches the ledger already held when offered again, to ack again; taken.
    pub fn take_reacks(&mut self) -> BTreeMap<Origin, SeqRanges> {
        std::mem::take(&mut self.reacks)
    }

    /// No message since the last flush.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Receive time (µs) of the oldest buffered event.
    pub fn oldest_received_us(&self) -> Option<i64> {
        self.oldest_received_us
    }

    /// Whether the flush should be sealed now.
    pub fn due(&self, limits: &FlushLimits, now: Instant) -> bool {
        let (rows, bytes) = self.assembler.size();
        rows >= limits.max_rows
            || bytes >= limits.max_bytes
            || self
                .opened_at
                .is_some_and(|t| now.saturating_duration_since(t) >= limits.max_age)
    }

    /// Drops everything held (a rebalance, or a flush that may not commit) and
    /// returns where each partition of it began, to rewind to.
    pub fn abandon(&mut self) -> BTreeMap<Partition, i64> {
        let first = std::mem::take(&mut self.first_offsets);
        self.reset();
        first
    }

    fn reset(&mut self) {
        self.assembler.clear();
        self.batches.clear();
        self.delivered.clear();
        self.rejected.clear();
        self.quarantine.clear();
        self.offsets.clear();
        self.first_offsets.clear();
        self.oldest_received_us = None;
        self.opened_at = None;
    }

    /// Seals everything held into one flush with a new flush id, encoding each
    /// (type, hour) with `encode`, and starts an empty one. `None` when nothing is
    /// held. An `encode` error leaves the builder empty (the caller stops: nothing
    /// of it was committed, offsets or acked).
    pub fn seal<E>(
        &mut self,
        created_at_ms: i64,
        mut encode: impl FnMut(&RecordBatch) -> Result<Bytes, E>,
    ) -> Result<Option<Sealed>, E> {
        if self.is_empty() {
            return Ok(None);
        }
        self.flushes += 1;
        let flush_id = format!("{}-{}-{:06}", self.consumer_id, self.start_ms, self.flushes);
        let finished = self.assembler.take();
        let acks = std::mem::take(&mut self.batches);
        let delivered = std::mem::take(&mut self.delivered);
        let offsets = std::mem::take(&mut self.offsets);
        let first_offsets = std::mem::take(&mut self.first_offsets);
        let mut quarantine = std::mem::take(&mut self.quarantine);
        let rejected = rejected_document(&flush_id, &std::mem::take(&mut self.rejected));
        self.reset();
        if let Some((name, _)) = &rejected {
            quarantine.push(name.clone());
        }
        let mut files = Vec::new();
        let mut staged = Vec::new();
        let mut rows = 0;
        for (n, f) in finished.into_iter().enumerate() {
            let bytes = encode(&f.batch)?;
            let staging = layout::staging_file(&flush_id, &format!("{n}.parquet"));
            rows += f.batch.num_rows() as u64;
            files.push(FileEntry {
                staging: staging.clone(),
                final_path: format!(
                    "{}/{}/{flush_id}-{n}.parquet",
                    f.event_type,
                    f.hour.partition_path()
                ),
                event_type: f.event_type,
                hour: f.hour.0,
                rows: f.batch.num_rows() as u64,
                bytes: bytes.len() as u64,
            });
            staged.push((staging, bytes));
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            flush_id,
            consumer_id: self.consumer_id.clone(),
            created_at_ms,
            files,
            batches: acks.iter().map(|(o, set)| agent_batches(o, set)).collect(),
            delivered: delivered_entries(&delivered),
            quarantine,
            offsets: offset_entries(&offsets),
            aborted: false,
        };
        Ok(Some(Sealed {
            manifest,
            staged,
            rejected,
            acks,
            offsets,
            first_offsets,
            rows,
        }))
    }
}

fn delivered_entries(delivered: &DeliveredCounts) -> Vec<Delivered> {
    delivered
        .iter()
        .map(
            |((origin, ty, hour), (events, quarantined, batches))| Delivered {
                agent_id: origin.agent_id.clone(),
                spool_id: origin.spool_id,
                event_type: ty.clone(),
                hour: hour.0,
                events: *events,
                quarantined: *quarantined,
                batch_ranges: batches.iter().collect(),
            },
        )
        .collect()
}

fn offset_entries(offsets: &BTreeMap<Partition, i64>) -> Vec<OffsetEntry> {
    offsets
        .iter()
        .map(|((topic, partition), next)| OffsetEntry {
            topic: topic.clone(),
            partition: *partition,
            next_offset: *next,
        })
        .collect()
}

fn agent_batches(origin: &Origin, set: &SeqRanges) -> AgentBatches {
    AgentBatches {
        agent_id: origin.agent_id.clone(),
        spool_id: origin.spool_id,
        ranges: set.iter().collect(),
    }
}

/// `_quarantine/schema/<flush_id>.jsonl`: one JSON line per rejected event, with what
/// `evd quarantine replay` needs to write its row as it would have been written
/// (docs/wire-format.md, object-store documents).
fn rejected_document(flush_id: &str, rejected: &[RejectedEvent]) -> Option<(String, Bytes)> {
    if rejected.is_empty() {
        return None;
    }
    let mut text = String::new();
    for r in rejected {
        let line = serde_json::json!({
            "version": crate::replay::QUARANTINE_DOC_VERSION,
            "agent_id": r.origin.agent_id, "spool_id": r.origin.spool_id,
            "batch_seq": r.batch_seq, "event_type": r.event_type,
            "bucket_hour": r.bucket_hour.0, "event_seq": r.event_seq,
            "received_at_us": r.received_at_us,
            "reason": r.reason, "body": String::from_utf8_lossy(&r.body),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    Some((layout::quarantined_events(flush_id), Bytes::from(text)))
}

#[cfg(test)]
#[path = "flush_tests.rs"]
mod tests;
