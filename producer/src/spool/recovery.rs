//! Recovery: `open` replays every segment (the rules and the damage handling are in
//! the module doc of `spool`, section *Recovery*).

use std::collections::BTreeMap;

use evd_schemas::SeqRanges;

use super::frame::{self, Frame, Read};
use super::{
    CORRUPT_BYTES_PER_SKIPPED_SEQ, Location, PendingEvent, Recovered, RecoveredId, RecoveryReport,
    Segment, SegmentStore, Spool, SpoolError, UnackedBatch,
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
                bytes: _,
            } => {
                self.next_batch_seq = self.next_batch_seq.max(batch_seq + 1);
                // Events of a sealed batch are not lost even when their frames are.
                for (a, b) in events.iter() {
                    replay.covered.insert_range(a, b);
                    // Sealed: only the events' ids are still needed, not their bodies
                    // (so replaying a full spool holds at most the unsealed ones).
                    let sealed: Vec<u64> = replay.events.range(a..=b).map(|(&s, _)| s).collect();
                    for seq in sealed {
                        let e = replay.events.remove(&seq).expect("listed above");
                        replay.ids.extend(recovered_id(&e));
                    }
                }
                if let Some(max) = events.iter().last().map(|(_, b)| b) {
                    self.next_event_seq = self.next_event_seq.max(max + 1);
                }
                if self.unacked.contains_key(&batch_seq) || replay.acked.contains(batch_seq) {
                    return Ok(());
                }
                let location = Location {
                    segment,
                    offset: at as u64,
                    len,
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
