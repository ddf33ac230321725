//! Recovery: `open` replays every segment (the rules and the damage handling are in
//! the module doc of `spool`, section *Recovery*).

use std::collections::BTreeMap;

use evd_schemas::{SeqRanges, SpoolId};

use super::frame::{self, Frame, Read};
use super::{
    CORRUPT_BYTES_PER_SKIPPED_SEQ, Location, PendingEvent, Segment, SegmentStore, Spool,
    SpoolError, UnackedBatch,
};

impl<S: SegmentStore> Spool<S> {
    pub(super) fn replay(&mut self) -> Result<Recovered, SpoolError> {
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
        let mut ids = replay.ids;
        ids.extend(replay.events.values().filter_map(recovered_id));
        ids.sort_by_key(|id| id.event_seq);
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

    /// Replays one frame read at `at` (`len` bytes) of `segment`.
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
                self.check_owner(segment, spool_id, agent_id)?;
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
                let event = PendingEvent {
                    event_seq,
                    received_at_us,
                    event_type,
                    body,
                };
                self.replay_event(segment, event, replay);
            }
            Frame::Sealed {
                batch_seq,
                bucket_hour,
                sealed_at_ms,
                event_type,
                event_count,
                events,
                bytes: _,
            } => {
                let batch = UnackedBatch {
                    batch_seq,
                    event_type,
                    bucket_hour,
                    sealed_at_ms,
                    event_count,
                    events,
                    location: Location {
                        segment,
                        offset: at as u64,
                        len,
                    },
                };
                self.replay_sealed(batch, replay);
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

    /// A header must name this agent and the spool every other segment names.
    fn check_owner(
        &mut self,
        segment: u64,
        spool_id: SpoolId,
        agent_id: String,
    ) -> Result<(), SpoolError> {
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
        Ok(())
    }

    fn replay_event(&mut self, segment: u64, event: PendingEvent, replay: &mut Replay) {
        let seq = event.event_seq;
        replay.advance(seq, seq + 1);
        self.next_event_seq = self.next_event_seq.max(seq + 1);
        let seg = self.segments.get_mut(&segment).expect("current segment");
        seg.events.insert(seq);
        seg.live_events += 1;
        seg.last_received_us = seg.last_received_us.max(event.received_at_us);
        replay.events.insert(seq, event);
    }

    /// A sealed batch covers its events (they are not lost even when their frames
    /// are) and is unacked unless an acked frame read so far freed it.
    fn replay_sealed(&mut self, batch: UnackedBatch, replay: &mut Replay) {
        self.next_batch_seq = self.next_batch_seq.max(batch.batch_seq + 1);
        for (a, b) in batch.events.iter() {
            replay.covered.insert_range(a, b);
            // Sealed: only the events' ids are still needed, not their bodies
            // (so replaying a full spool holds at most the unsealed ones).
            let sealed: Vec<u64> = replay.events.range(a..=b).map(|(&s, _)| s).collect();
            for seq in sealed {
                let e = replay.events.remove(&seq).expect("listed above");
                replay.ids.extend(recovered_id(&e));
            }
        }
        if let Some(max) = batch.events.iter().last().map(|(_, b)| b) {
            self.next_event_seq = self.next_event_seq.max(max + 1);
        }
        if self.unacked.contains_key(&batch.batch_seq) || replay.acked.contains(batch.batch_seq) {
            return;
        }
        self.segments
            .get_mut(&batch.location.segment)
            .expect("current segment")
            .live_batches += 1;
        self.unacked.insert(batch.batch_seq, batch);
    }
}

/// State built while replaying.
#[derive(Default)]
struct Replay {
    /// Events no sealed frame read so far covers, with their bodies.
    events: BTreeMap<u64, PendingEvent>,
    /// Client ids of events already covered by a sealed frame.
    ids: Vec<RecoveredId>,
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

/// The client `event_id` an event line carries, for the dedup window.
fn recovered_id(e: &PendingEvent) -> Option<RecoveredId> {
    Some(RecoveredId {
        event_id: evd_schemas::event::event_id_of(&e.body)?,
        event_seq: e.event_seq,
        received_at_us: e.received_at_us,
    })
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
