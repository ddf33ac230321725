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
//!    fit; a short write (ENOSPC) is cut back to the last whole frame.
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

pub mod frame;
pub mod store;

use std::collections::BTreeMap;

use evd_schemas::{Hour, SeqRanges, SpoolId};

use frame::{FRAME_PREFIX, Frame, Read};
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
struct Location {
    segment: u64,
    offset: u64,
    len: usize,
}

/// What `open` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub frames: u64,
    /// Bytes cut from the end of the newest segment (never-synced writes).
    pub torn_tail_bytes: u64,
    /// Damaged regions skipped, and their total size.
    pub corrupt_regions: u64,
    pub corrupt_bytes: u64,
    /// Event seqs that were durably accepted and are gone (from the seq gaps).
    pub lost_events: SeqRanges,
}

impl RecoveryReport {
    pub fn lost_event_count(&self) -> u64 {
        self.lost_events.seq_count()
    }
}

/// A client idempotency key found in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredId {
    pub event_id: String,
    pub event_seq: u64,
    pub received_at_us: i64,
}

/// Everything the agent needs to resume.
#[derive(Debug)]
pub struct Recovered {
    /// In event seq order.
    pub pending: Vec<PendingEvent>,
    /// The `event_id` of every event still in the spool (acked or not), for dedup.
    pub ids: Vec<RecoveredId>,
    pub report: RecoveryReport,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool is at its size limit: refuse the event (backpressure), keep going.
    #[error("spool full: {used} of {max} bytes used")]
    Full { used: u64, max: u64 },
    /// The spool belongs to another agent id; fix the config or the spool path.
    #[error(
        "spool belongs to agent {found:?}, but this agent is {configured:?}; an agent id never changes for a spool"
    )]
    WrongAgent { found: String, configured: String },
    /// Segments of two spool incarnations in one directory (files copied between
    /// spools?): refuse to start rather than mix their batch seqs.
    #[error(
        "segment {segment} belongs to spool {found}, the rest of the spool to {spool}; do not copy segments between spools"
    )]
    MixedSpools {
        segment: u64,
        found: SpoolId,
        spool: SpoolId,
    },
    /// The disk has too little room left for another event (the spool keeps a
    /// segment's worth free so batches can still be sealed and acks recorded): refuse
    /// the event (backpressure), keep going. Space freed on the disk is found again.
    #[error("spool full: the disk has {free} bytes free, {reserve} are kept for batching")]
    DiskFull { free: u64, reserve: u64 },
    /// A write, sync or read failed: the process must stop; data may not be durable.
    #[error("spool I/O failed (fatal): {0}")]
    Io(#[from] std::io::Error),
    /// A caller asked for a batch the spool does not hold.
    #[error("batch {0} is not in the spool")]
    UnknownBatch(u64),
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
            now_us: None,
            first_now_us: None,
            disk_free: None,
        };
        let recovered = spool.replay()?;
        spool.spool_id.get_or_insert(new_spool_id);
        spool.start_segment()?;
        spool.free_segments()?;
        spool.disk_free = spool.store.available_bytes()?;
        Ok((spool, recovered))
    }

    fn replay(&mut self) -> Result<Recovered, SpoolError> {
        let ids = self.store.list()?;
        let mut report = RecoveryReport {
            segments: ids.len(),
            ..Default::default()
        };
        let mut replay = Replay::default();
        for (i, &id) in ids.iter().enumerate() {
            let is_last = i + 1 == ids.len();
            let buf = self.store.read_all(id)?;
            self.segments.insert(id, Segment::default());
            let mut at = 0;
            while at < buf.len() {
                match frame::decode(&buf[at..]) {
                    Read::Frame(f, n) => {
                        report.frames += 1;
                        self.apply(id, at, n, f, &mut replay)?;
                        at += n;
                    }
                    Read::Short | Read::Bad => match resync(&buf, at + 1) {
                        Some(next) => {
                            report.corrupt_regions += 1;
                            report.corrupt_bytes += (next - at) as u64;
                            at = next;
                        }
                        None if is_last => {
                            report.torn_tail_bytes = (buf.len() - at) as u64;
                            self.store.truncate(id, at as u64)?;
                            break;
                        }
                        None => {
                            report.corrupt_regions += 1;
                            report.corrupt_bytes += (buf.len() - at) as u64;
                            break;
                        }
                    },
                }
            }
            let seg = self.segments.get_mut(&id).expect("inserted above");
            seg.bytes = at as u64;
            self.total_bytes += seg.bytes;
            self.active = id;
        }
        // Damage anywhere (a torn tail too: a disk may lose writes it said were synced)
        // may have held sealed frames whose batches were produced: skip their seqs.
        let damaged = report.corrupt_bytes + report.torn_tail_bytes;
        if damaged > 0 {
            self.next_batch_seq += damaged / CORRUPT_BYTES_PER_SKIPPED_SEQ + 1;
        }
        report.lost_events = replay.lost();
        let covered: SeqRanges = replay.covered;
        let ids = replay
            .events
            .values()
            .filter_map(|e| {
                Some(RecoveredId {
                    event_id: evd_schemas::event::event_id_of(&e.body)?,
                    event_seq: e.event_seq,
                    received_at_us: e.received_at_us,
                })
            })
            .collect();
        let pending = replay
            .events
            .into_values()
            .filter(|e| !covered.contains(e.event_seq))
            .collect();
        Ok(Recovered {
            pending,
            ids,
            report,
        })
    }

    fn apply(
        &mut self,
        segment: u64,
        at: usize,
        len: usize,
        frame: Frame,
        replay: &mut Replay,
    ) -> Result<(), SpoolError> {
        match frame {
            Frame::Header {
                spool_id,
                agent_id,
                next_event_seq,
                next_batch_seq,
                ..
            } => {
                if agent_id != self.agent_id {
                    return Err(SpoolError::WrongAgent {
                        found: agent_id,
                        configured: self.agent_id.clone(),
                    });
                }
                match self.spool_id {
                    None => self.spool_id = Some(spool_id),
                    Some(spool) if spool != spool_id => {
                        return Err(SpoolError::MixedSpools {
                            segment,
                            found: spool_id,
                            spool,
                        });
                    }
                    Some(_) => {}
                }
                replay.advance(next_event_seq, next_event_seq);
                self.next_event_seq = self.next_event_seq.max(next_event_seq);
                self.next_batch_seq = self.next_batch_seq.max(next_batch_seq);
            }
            Frame::Event {
                event_seq,
                received_at_us,
                event_type,
                body,
            } => {
                replay.advance(event_seq, event_seq + 1);
                self.next_event_seq = self.next_event_seq.max(event_seq + 1);
                let seg = self.segments.get_mut(&segment).expect("current segment");
                seg.events.insert(event_seq);
                seg.live_events += 1;
                seg.last_received_us = seg.last_received_us.max(received_at_us);
                replay.events.insert(
                    event_seq,
                    PendingEvent {
                        event_seq,
                        received_at_us,
                        event_type,
                        body,
                    },
                );
            }
            Frame::Sealed {
                batch_seq,
                bucket_hour,
                sealed_at_ms,
                event_type,
                event_count,
                events,
                bytes,
            } => {
                self.next_batch_seq = self.next_batch_seq.max(batch_seq + 1);
                // Events of a sealed batch are not lost even when their frames are.
                for (a, b) in events.iter() {
                    replay.covered.insert_range(a, b);
                }
                if let Some(max) = events.iter().last().map(|(_, b)| b) {
                    self.next_event_seq = self.next_event_seq.max(max + 1);
                }
                if self.unacked.contains_key(&batch_seq) || replay.acked.contains(batch_seq) {
                    return Ok(());
                }
                let location = Location {
                    segment,
                    offset: (at + len - bytes.len()) as u64,
                    len: bytes.len(),
                };
                self.segments
                    .get_mut(&segment)
                    .expect("current segment")
                    .live_batches += 1;
                self.unacked.insert(
                    batch_seq,
                    UnackedBatch {
                        batch_seq,
                        event_type,
                        bucket_hour,
                        sealed_at_ms,
                        event_count,
                        events,
                        location,
                    },
                );
            }
            Frame::Acked { batch_seqs } => {
                for (a, b) in batch_seqs.iter() {
                    replay.acked.insert_range(a, b);
                }
                self.mark_acked(&batch_seqs);
            }
        }
        Ok(())
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        if self.active != 0 && self.segments.contains_key(&self.active) {
            self.store.sync(self.active)?;
        }
        let id = self.active + 1;
        self.store.create(id)?;
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
        self.store.append(id, &self.scratch)?;
        self.store.sync(id)?;
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
        if self.segments[&self.active].bytes >= self.limits.segment_bytes {
            self.start_segment()?;
        }
        self.scratch.clear();
        frame::encode(frame, &mut self.scratch);
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

    /// Bytes an event frame of this size takes.
    pub fn event_frame_bytes(event_type: &str, body_len: usize) -> u64 {
        (FRAME_PREFIX + 1 + 16 + 1 + event_type.len() + body_len) as u64
    }

    /// Appends an accepted event; durable after the next [`sync`](Self::sync).
    /// Refused with [`SpoolError::Full`] when the spool is at its event quota.
    pub fn append_event(
        &mut self,
        received_at_us: i64,
        event_type: &str,
        body: &[u8],
    ) -> Result<u64, SpoolError> {
        self.tick(received_at_us);
        let need = Self::event_frame_bytes(event_type, body.len());
        let quota = self.limits.max_bytes / 10 * 9;
        if self.total_bytes + need > quota {
            // Room for new events comes before remembering ids for dedup.
            self.free_dead_segments(true)?;
        }
        if self.total_bytes + need > quota {
            return Err(SpoolError::Full {
                used: self.total_bytes,
                max: self.limits.max_bytes,
            });
        }
        let reserve = self.disk_reserve();
        if self.disk_free.is_some_and(|free| need + reserve > free) {
            self.free_dead_segments(true)?;
            self.disk_free = self.store.available_bytes()?;
            if let Some(free) = self.disk_free.filter(|free| need + reserve > *free) {
                return Err(SpoolError::DiskFull { free, reserve });
            }
        }
        let event_seq = self.next_event_seq;
        self.write(&Frame::Event {
            event_seq,
            received_at_us,
            event_type: event_type.to_string(),
            body: body.to_vec(),
        })?;
        self.next_event_seq += 1;
        let seg = self.segments.get_mut(&self.active).expect("active exists");
        seg.events.insert(event_seq);
        seg.live_events += 1;
        seg.last_received_us = seg.last_received_us.max(received_at_us);
        Ok(event_seq)
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
        let frame = Frame::Sealed {
            batch_seq: batch.batch_seq,
            bucket_hour: batch.bucket_hour,
            sealed_at_ms: batch.sealed_at_ms,
            event_type: batch.event_type.to_string(),
            event_count: batch.event_count,
            events: batch.events.clone(),
            bytes: batch.bytes.to_vec(),
        };
        let offset = self.write(&frame)?;
        let seg = self.segments.get_mut(&self.active).expect("active exists");
        seg.live_batches += 1;
        let end = offset + self.scratch.len() as u64;
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
                    offset: end - batch.bytes.len() as u64,
                    len: batch.bytes.len(),
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

    /// Records end-to-end acks and frees segments that no longer hold anything live.
    /// Returns the batch seqs newly acked (acks are idempotent).
    pub fn ack(&mut self, batch_seqs: &SeqRanges) -> Result<SeqRanges, SpoolError> {
        let newly: SeqRanges = SeqRanges::from_ranges(
            batch_seqs
                .iter()
                .flat_map(|(a, b)| self.unacked.range(a..=b).map(|(&s, _)| (s, s)))
                .collect::<Vec<_>>(),
        );
        if newly.is_empty() {
            return Ok(newly);
        }
        self.write(&Frame::Acked {
            batch_seqs: newly.clone(),
        })?;
        self.mark_acked(&newly);
        self.free_segments()?;
        Ok(newly)
    }

    fn mark_acked(&mut self, batch_seqs: &SeqRanges) {
        for (a, b) in batch_seqs.iter() {
            let seqs: Vec<u64> = self.unacked.range(a..=b).map(|(&s, _)| s).collect();
            for seq in seqs {
                let batch = self.unacked.remove(&seq).expect("listed above");
                if let Some(seg) = self.segments.get_mut(&batch.location.segment) {
                    seg.live_batches -= 1;
                }
                for seg in self.segments.values_mut() {
                    let n = seg.events.intersection_count(&batch.events);
                    seg.live_events = seg.live_events.saturating_sub(n);
                }
            }
        }
    }

    /// Tells the spool the time, and frees dead segments whose dedup window is over.
    pub fn expire(&mut self, now_us: i64) -> Result<(), SpoolError> {
        self.tick(now_us);
        self.free_segments()
    }

    fn tick(&mut self, now_us: i64) {
        self.now_us = Some(self.now_us.map_or(now_us, |n| n.max(now_us)));
        self.first_now_us.get_or_insert(now_us);
    }

    fn free_segments(&mut self) -> Result<(), SpoolError> {
        self.free_dead_segments(false)
    }

    /// Deletes dead segments, oldest first, never the active one, and (with a dedup
    /// window, unless `ignore_window`) only once the window after their newest event
    /// and after open is over.
    fn free_dead_segments(&mut self, ignore_window: bool) -> Result<(), SpoolError> {
        while let Some((&id, seg)) = self.segments.first_key_value() {
            if id == self.active || !seg.is_dead() {
                break;
            }
            if self.limits.dedup_window_us > 0 && !ignore_window {
                let (Some(now), Some(first)) = (self.now_us, self.first_now_us) else {
                    break;
                };
                if now < seg.last_received_us.max(first) + self.limits.dedup_window_us {
                    break;
                }
            }
            self.total_bytes -= seg.bytes;
            self.segments.remove(&id);
            self.store.remove(id)?;
        }
        Ok(())
    }

    /// The exact sealed bytes of an unacked batch, for retransmission.
    pub fn read_sealed(&mut self, batch_seq: u64) -> Result<Vec<u8>, SpoolError> {
        let loc = self
            .unacked
            .get(&batch_seq)
            .ok_or(SpoolError::UnknownBatch(batch_seq))?
            .location;
        Ok(self.store.read_at(loc.segment, loc.offset, loc.len)?)
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

/// State built while replaying.
#[derive(Default)]
struct Replay {
    events: BTreeMap<u64, PendingEvent>,
    covered: SeqRanges,
    acked: SeqRanges,
    /// Event seqs skipped in the log (before subtracting covered ones). Seqs are
    /// assigned in log order and every segment header repeats the next one, so any
    /// jump means frames are gone, even when the damage itself left no trace (a
    /// segment cut exactly at a frame boundary).
    gaps: SeqRanges,
    /// The event seq expected next, once any is known.
    expected_next: Option<u64>,
}

impl Replay {
    /// In log order: a frame shows `first_seen` as present and `next` as the seq after
    /// it (an event: its seq and seq + 1; a header: its next seq twice).
    fn advance(&mut self, first_seen: u64, next: u64) {
        if let Some(expected) = self.expected_next
            && first_seen > expected
        {
            self.gaps.insert_range(expected, first_seen - 1);
        }
        self.expected_next = Some(self.expected_next.map_or(next, |e| e.max(next)));
    }

    /// Seqs that were durably accepted and are gone: gaps not covered by a sealed batch.
    fn lost(&self) -> SeqRanges {
        let mut lost = self.gaps.clone();
        for (a, b) in self.covered.iter() {
            lost.remove_range(a, b);
        }
        lost
    }
}

/// The offset of the next valid frame at or after `from`, if any.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&at| matches!(frame::decode(&buf[at..]), Read::Frame(..)))
}

#[cfg(test)]
mod tests;
