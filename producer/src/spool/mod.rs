//! # Spool: the agent's crash-safe disk buffer
//!
//! Every event the agent acks to a client is in the spool first, and stays there until
//! a consumer acks the batch holding it end to end. This module is a synchronous state
//! machine over a [`SegmentStore`] (a directory of files, or memory for crash tests);
//! the async shell decides *when* to call `sync` (group commit).
//!
//! ## On-disk design (format version 2)
//!
//! A spool is a directory of **segments**, files named `<id:020>.seg`, ids ascending.
//! Only the newest segment is appended to. A segment is a sequence of **frames**:
//!
//! | size | field | meaning |
//! |-----:|-------|---------|
//! | 4 | len | bytes of `kind` + `body` (1..=80 MiB) |
//! | 4 | crc | CRC-32C of `kind` + `body` |
//! | 1 | kind | 1 header, 2 event, 3 sealed, 4 acked |
//! | len−1 | body | by kind, below (little-endian) |
//!
//! - **header** (first frame of every segment): `"EVDS"`, version `2`, segment id u64,
//!   spool id u64 (the incarnation, `docs/wire-format.md` §0), agent id (u8 length +
//!   UTF-8), next event seq u64, next batch seq u64. Version 1 headers (no spool id)
//!   are read as the legacy incarnation 0, which such a spool then keeps.
//! - **event**: event seq u64, received-at µs i64, event type (u8 length + UTF-8),
//!   then the event line as the client sent it.
//! - **sealed**: batch seq u64, bucket hour u32, sealed-at ms i64, event type,
//!   event count u32, the event seqs it covers (u32 count + (first, last) u64 pairs),
//!   then the exact sealed batch bytes (`docs/wire-format.md` §1).
//! - **acked**: batch seqs (u32 count + pairs) that consumers acked end to end.
//!
//! ## Rules that make it crash-safe
//!
//! 1. A client is acked only after the `sync` that covers its event frame.
//! 2. Event seqs and batch seqs are assigned in log order, so every segment covers a
//!    contiguous run of event seqs and a gap in them can only mean damage.
//! 3. A sealed frame is synced **before** its batch is produced, so a batch seq is never
//!    reused for different contents (the consumer dedups on it).
//! 4. Before a new segment is created the current one is synced, and every segment
//!    starts with a header holding the next seqs; the newest segment is never deleted,
//!    so the counters survive even when every older segment is freed.
//! 5. Segments are deleted oldest first, and only when every event in them belongs to an
//!    acked batch and every batch sealed in them is acked. A sealed frame always comes
//!    after its events, so a surviving event always has its surviving sealed frame.
//!    Such a dead segment is kept for `dedup_window_us` after its newest event and after
//!    the spool's open, so the client `event_id`s in it survive a crash (recovery
//!    returns them); when space is short, new events win and it goes at once.
//! 6. `open` starts a fresh segment, so a torn tail is never appended to.
//! 7. A full disk refuses events, never acks: an event frame is written only while the
//!    disk keeps one segment's worth free after it, so sealed and acked frames still
//!    fit; a short write (ENOSPC) is cut back to the last whole frame. When another
//!    process takes that reserve too, a sealed frame, an acked frame or a new segment
//!    fails with [`SpoolError::DiskFull`] and nothing is recorded: the caller retries
//!    later (the writer keeps the batch or the acks). `open` frees dead segments
//!    before it starts its segment.
//! 8. A spool's incarnation (`spool_id`) is drawn at random when the spool is created
//!    and written into every segment header; batch seqs are unique only within it. A
//!    spool that is wiped or replaced starts again at batch seq 1 under a new id, so
//!    it never reuses a `(agent, spool, seq)` a consumer already committed.
//!
//! ## Recovery
//!
//! `open` replays every segment. Events not covered by a sealed frame are returned as
//! pending (to be batched again); sealed batches not acked are returned for
//! retransmission with their exact bytes. A damaged region followed by valid frames is
//! **corruption**: it is skipped by resynchronising on the next valid frame, and the
//! events lost are counted exactly from the gap in event seqs (bounded by the next
//! frame or segment header). Damage at the very end of the newest segment is a **torn
//! tail** from writes that were never synced, so never acked: it is truncated and
//! reported in bytes. After corruption or a torn tail (a disk may also lose writes it
//! said were synced) the next batch seq skips ahead by more than the damaged region
//! could have held, so a lost sealed frame's seq is never reused.

mod accounting;
mod append;
mod error;
pub mod frame;
mod recovery;
pub mod store;

use std::collections::BTreeMap;

use evd_schemas::{Hour, SeqRanges, SpoolId};

pub use error::SpoolError;
use frame::{FRAME_PREFIX, Frame, Read};
pub use recovery::{Recovered, RecoveredId, RecoveryReport};
pub use store::{DirStore, MemStore, SegmentStore};

/// Size limits of a spool.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    /// A segment whose batches are all acked is kept this long after its newest event
    /// was received (and after every spool open), so the ids of its events survive a
    /// crash for the client-resend dedup window. 0: freed at once.
    pub dedup_window_us: i64,
    /// Event frames are refused ("spool full") once the spool holds 90% of this;
    /// the rest is kept for sealed frames so batching can always make progress.
    pub max_bytes: u64,
    /// A new segment starts once the active one reaches this size.
    pub segment_bytes: u64,
}

/// An event accepted but not yet sealed into a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub event_seq: u64,
    pub received_at_us: i64,
    pub event_type: String,
    pub body: Vec<u8>,
}

/// A sealed batch waiting for its end-to-end ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnackedBatch {
    pub batch_seq: u64,
    pub event_type: String,
    pub bucket_hour: Hour,
    pub sealed_at_ms: i64,
    pub event_count: u32,
    pub events: SeqRanges,
    location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Where a sealed frame is: its segment, the frame's first byte and its length
/// (prefix included), so a re-read checks the frame's CRC.
struct Location {
    segment: u64,
    offset: u64,
    len: usize,
}

#[derive(Debug, Default)]
struct Segment {
    bytes: u64,
    /// Event seqs whose event frames are in this segment.
    events: SeqRanges,
    /// Of those, how many are not yet in an acked batch.
    live_events: u64,
    /// Sealed frames in this segment whose batch is not acked.
    live_batches: u64,
    /// Receive time of the newest event in this segment.
    last_received_us: i64,
}

impl Segment {
    fn is_dead(&self) -> bool {
        self.live_events == 0 && self.live_batches == 0
    }
}

/// Batch seqs to skip per corrupt byte: a sealed frame is far larger than 32 bytes.
const CORRUPT_BYTES_PER_SKIPPED_SEQ: u64 = 32;

pub struct Spool<S: SegmentStore> {
    store: S,
    agent_id: String,
    /// The incarnation (rule 8): from the first segment header found, or drawn anew.
    spool_id: Option<SpoolId>,
    limits: SpoolLimits,
    segments: BTreeMap<u64, Segment>,
    active: u64,
    total_bytes: u64,
    dirty: bool,
    next_event_seq: u64,
    next_batch_seq: u64,
    unacked: BTreeMap<u64, UnackedBatch>,
    scratch: Vec<u8>,
    /// Event frames of one `append_events` call, written to the store at once.
    group: Vec<u8>,
    /// The latest time the caller told (`append_event`, `expire`), and the first one
    /// since open: dead segments are kept for the dedup window after both.
    now_us: Option<i64>,
    first_now_us: Option<i64>,
    /// What the disk had free at the last `sync`, less what was written since.
    disk_free: Option<u64>,
}

impl<S: SegmentStore> Spool<S> {
    /// Opens (or creates) a spool, replays it and starts a fresh segment. A new spool
    /// gets a random incarnation.
    pub fn open(
        store: S,
        agent_id: &str,
        limits: SpoolLimits,
    ) -> Result<(Self, Recovered), SpoolError> {
        Self::open_with(store, agent_id, limits, SpoolId::random())
    }

    /// [`Spool::open`] with the incarnation a new spool gets (`new_spool_id`); an
    /// existing spool keeps the one in its segment headers.
    pub fn open_with(
        store: S,
        agent_id: &str,
        limits: SpoolLimits,
        new_spool_id: SpoolId,
    ) -> Result<(Self, Recovered), SpoolError> {
        let mut spool = Spool {
            store,
            agent_id: agent_id.to_string(),
            spool_id: None,
            limits,
            segments: BTreeMap::new(),
            active: 0,
            total_bytes: 0,
            dirty: false,
            next_event_seq: 1,
            next_batch_seq: 1,
            unacked: BTreeMap::new(),
            scratch: Vec::new(),
            group: Vec::new(),
            now_us: None,
            first_now_us: None,
            disk_free: None,
        };
        let recovered = spool.replay()?;
        spool.spool_id.get_or_insert(new_spool_id);
        // Free first: on a disk another process filled, dead segments are the room
        // the new segment needs.
        spool.free_segments()?;
        spool.start_segment()?;
        spool.disk_free = spool.store.available_bytes()?;
        Ok((spool, recovered))
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        if self.active != 0 && self.segments.contains_key(&self.active) {
            self.store.sync(self.active)?;
        }
        let id = self.active + 1;
        self.scratch.clear();
        frame::encode(
            &Frame::Header {
                segment_id: id,
                spool_id: self.spool_id(),
                agent_id: self.agent_id.clone(),
                next_event_seq: self.next_event_seq,
                next_batch_seq: self.next_batch_seq,
            },
            &mut self.scratch,
        );
        let created = self
            .store
            .create(id)
            .and_then(|()| self.store.append(id, &self.scratch))
            .and_then(|()| self.store.sync(id));
        if let Err(e) = created {
            // Not a segment yet: nothing refers to it. A full disk refuses, never kills.
            let _ = self.store.remove(id);
            if store::is_storage_full(&e) {
                self.disk_free = Some(0);
                return Err(SpoolError::DiskFull {
                    free: 0,
                    reserve: self.disk_reserve(),
                });
            }
            return Err(e.into());
        }
        let bytes = self.scratch.len() as u64;
        self.segments.insert(
            id,
            Segment {
                bytes,
                ..Default::default()
            },
        );
        self.total_bytes += bytes;
        self.active = id;
        self.dirty = false;
        Ok(())
    }

    /// Appends `frame` to the active segment (not yet durable); returns its offset.
    fn write(&mut self, frame: &Frame) -> Result<u64, SpoolError> {
        self.write_with(|out| frame::encode(frame, out))
    }

    /// Appends the frame `encode` puts in its buffer; returns its offset.
    fn write_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<u64, SpoolError> {
        if self.segments[&self.active].bytes >= self.limits.segment_bytes {
            self.start_segment()?;
        }
        self.scratch.clear();
        encode(&mut self.scratch);
        if let Err(e) = self.store.append(self.active, &self.scratch) {
            if !store::is_storage_full(&e) {
                return Err(e.into());
            }
            // A short write on a full disk: cut it off so the segment ends on a frame.
            let end = self.segments[&self.active].bytes;
            self.store.truncate(self.active, end)?;
            self.disk_free = Some(0);
            return Err(SpoolError::DiskFull {
                free: 0,
                reserve: self.disk_reserve(),
            });
        }
        self.disk_free = self
            .disk_free
            .map(|f| f.saturating_sub(self.scratch.len() as u64));
        let seg = self.segments.get_mut(&self.active).expect("active exists");
        let offset = seg.bytes;
        seg.bytes += self.scratch.len() as u64;
        self.total_bytes += self.scratch.len() as u64;
        self.dirty = true;
        Ok(offset)
    }

    /// Reserves the seq for the next batch (to put in its header before sealing).
    /// A reserved seq that is never written is simply skipped.
    /// This spool's incarnation: batch seqs are unique within it.
    pub fn spool_id(&self) -> SpoolId {
        self.spool_id.expect("set when the spool was opened")
    }

    pub fn allocate_batch_seq(&mut self) -> u64 {
        let seq = self.next_batch_seq;
        self.next_batch_seq += 1;
        seq
    }

    /// Stores a sealed batch. It must be synced before the batch is produced.
    pub fn append_sealed(&mut self, batch: SealedBatch<'_>) -> Result<(), SpoolError> {
        let fields = frame::SealedFields {
            batch_seq: batch.batch_seq,
            bucket_hour: batch.bucket_hour,
            sealed_at_ms: batch.sealed_at_ms,
            event_type: batch.event_type,
            event_count: batch.event_count,
            events: batch.events,
        };
        let offset = self.write_with(|out| frame::encode_sealed(&fields, batch.bytes, out))?;
        let seg = self.segments.get_mut(&self.active).expect("active exists");
        seg.live_batches += 1;
        self.unacked.insert(
            batch.batch_seq,
            UnackedBatch {
                batch_seq: batch.batch_seq,
                event_type: batch.event_type.to_string(),
                bucket_hour: batch.bucket_hour,
                sealed_at_ms: batch.sealed_at_ms,
                event_count: batch.event_count,
                events: batch.events.clone(),
                location: Location {
                    segment: self.active,
                    offset,
                    len: self.scratch.len(),
                },
            },
        );
        Ok(())
    }

    /// Makes everything written so far durable. An error is fatal to the agent.
    /// Also looks at the disk's free space again (see [`SpoolError::DiskFull`]).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.dirty {
            self.store.sync(self.active)?;
            self.dirty = false;
        }
        self.disk_free = self.store.available_bytes()?;
        Ok(())
    }

    /// Disk space kept free for sealed and acked frames: one segment.
    fn disk_reserve(&self) -> u64 {
        self.limits.segment_bytes
    }

    /// The exact sealed bytes of an unacked batch, for retransmission.
    /// The exact sealed bytes of an unacked batch, read again from its frame, whose CRC
    /// must still hold: bytes the disk changed are never sent.
    pub fn read_sealed(&mut self, batch_seq: u64) -> Result<Vec<u8>, SpoolError> {
        let loc = self
            .unacked
            .get(&batch_seq)
            .ok_or(SpoolError::UnknownBatch(batch_seq))?
            .location;
        let buf = self.store.read_at(loc.segment, loc.offset, loc.len)?;
        match frame::decode(&buf) {
            Read::Frame(
                Frame::Sealed {
                    batch_seq: found,
                    bytes,
                    ..
                },
                n,
            ) if found == batch_seq && n == loc.len => Ok(bytes),
            _ => Err(SpoolError::CorruptSealed(batch_seq)),
        }
    }

    pub fn unacked(&self) -> impl Iterator<Item = &UnackedBatch> {
        self.unacked.values()
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            bytes: self.total_bytes,
            segments: self.segments.len(),
            unacked_batches: self.unacked.len(),
            oldest_unacked_ms: self.unacked.values().map(|b| b.sealed_at_ms).min(),
            next_event_seq: self.next_event_seq,
            next_batch_seq: self.next_batch_seq,
        }
    }

    /// The store, for tests that crash or corrupt it.
    pub fn into_store(self) -> S {
        self.store
    }
}

/// A sealed batch handed to [`Spool::append_sealed`].
#[derive(Debug, Clone, Copy)]
pub struct SealedBatch<'a> {
    pub batch_seq: u64,
    pub event_type: &'a str,
    pub bucket_hour: Hour,
    pub sealed_at_ms: i64,
    pub event_count: u32,
    pub events: &'a SeqRanges,
    pub bytes: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    pub bytes: u64,
    pub segments: usize,
    pub unacked_batches: usize,
    pub oldest_unacked_ms: Option<i64>,
    pub next_event_seq: u64,
    pub next_batch_seq: u64,
}

#[cfg(test)]
mod tests;
