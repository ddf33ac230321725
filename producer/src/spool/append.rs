//! Appending events: a group of events is one write to the store (the agent's hot path
//! wrote once per event), with the same refusals as one event at a time.
//!
//! Contract: each event is admitted or refused on its own ([`SpoolError::Full`],
//! [`SpoolError::DiskFull`]) exactly as if appended alone; admitted frames are encoded
//! into one buffer and written when the group ends or the segment fills. A write that
//! fails with a full disk is cut back to the segment's last whole frame and every event
//! of that write is refused with `DiskFull` (its seqs are not used, rule 2 holds). Only
//! written events count in the segment's accounting.

use super::store::{self, SegmentStore};
use super::{FRAME_PREFIX, Spool, SpoolError, frame};

/// The events admitted into the group buffer and not yet written.
#[derive(Default)]
struct Unwritten {
    /// Index in the caller's results of each event in the buffer, in seq order.
    slots: Vec<usize>,
    /// The seq of the first of them.
    first_seq: u64,
}

enum Admission {
    Admit,
    /// `Full` or `DiskFull`: this event is refused, the next may fit.
    Refuse(SpoolError),
}

impl<S: SegmentStore> Spool<S> {
    /// Bytes an event frame of this size takes.
    pub fn event_frame_bytes(event_type: &str, body_len: usize) -> u64 {
        (FRAME_PREFIX + 1 + 16 + 1 + event_type.len() + body_len) as u64
    }

    /// Appends one accepted event; durable after the next [`sync`](Self::sync).
    /// Refused with [`SpoolError::Full`] when the spool is at its event quota.
    pub fn append_event(
        &mut self,
        received_at_us: i64,
        event_type: &str,
        body: &[u8],
    ) -> Result<u64, SpoolError> {
        let mut results = self.append_events(received_at_us, [(event_type, body)])?;
        results.pop().expect("one result per event")
    }

    /// Appends accepted events received at `received_at_us`, all durable after the
    /// next [`sync`](Self::sync). Each gets its event seq or its refusal; an error
    /// that is neither `Full` nor `DiskFull` is returned as the call's error.
    pub fn append_events<'e>(
        &mut self,
        received_at_us: i64,
        events: impl IntoIterator<Item = (&'e str, &'e [u8])>,
    ) -> Result<Vec<Result<u64, SpoolError>>, SpoolError> {
        self.tick(received_at_us);
        let mut results = Vec::new();
        let mut unwritten = Unwritten::default();
        self.group.clear();
        for (event_type, body) in events {
            let limit = self.limits.segment_bytes;
            if self.segments[&self.active].bytes + self.group.len() as u64 >= limit {
                self.write_group(&mut unwritten, &mut results, received_at_us)?;
            }
            if self.group.is_empty() && self.segments[&self.active].bytes >= limit {
                match self.start_segment() {
                    Ok(()) => {}
                    Err(full @ SpoolError::DiskFull { .. }) => {
                        results.push(Err(full));
                        continue;
                    }
                    Err(fatal) => return Err(fatal),
                }
            }
            let need = Self::event_frame_bytes(event_type, body.len());
            if let Admission::Refuse(why) = self.admit(need)? {
                results.push(Err(why));
                continue;
            }
            if unwritten.slots.is_empty() {
                unwritten.first_seq = self.next_event_seq;
            }
            let event_seq = self.next_event_seq;
            frame::encode_event(event_seq, received_at_us, event_type, body, &mut self.group);
            self.next_event_seq += 1;
            self.disk_free = self.disk_free.map(|f| f.saturating_sub(need));
            unwritten.slots.push(results.len());
            results.push(Ok(event_seq));
        }
        self.write_group(&mut unwritten, &mut results, received_at_us)?;
        Ok(results)
    }

    /// Whether an event frame of `need` bytes may be added now.
    fn admit(&mut self, need: u64) -> Result<Admission, SpoolError> {
        let pending = self.group.len() as u64;
        let quota = self.limits.max_bytes / 10 * 9;
        if self.total_bytes + pending + need > quota {
            // Room for new events comes before remembering ids for dedup.
            self.free_dead_segments(true)?;
        }
        if self.total_bytes + pending + need > quota {
            return Ok(Admission::Refuse(SpoolError::Full {
                used: self.total_bytes + pending,
                max: self.limits.max_bytes,
            }));
        }
        let reserve = self.disk_reserve();
        if self.disk_free.is_some_and(|free| need + reserve > free) {
            self.free_dead_segments(true)?;
            let available = self.store.available_bytes()?;
            self.disk_free = available.map(|f| f.saturating_sub(pending));
            if let Some(free) = self.disk_free.filter(|free| need + reserve > *free) {
                return Ok(Admission::Refuse(SpoolError::DiskFull { free, reserve }));
            }
        }
        Ok(Admission::Admit)
    }

    /// Writes the group buffer to the active segment and accounts its events; on a
    /// full disk cuts the segment back and refuses them all.
    fn write_group(
        &mut self,
        unwritten: &mut Unwritten,
        results: &mut [Result<u64, SpoolError>],
        received_at_us: i64,
    ) -> Result<(), SpoolError> {
        if unwritten.slots.is_empty() {
            return Ok(());
        }
        let slots = std::mem::take(&mut unwritten.slots);
        let len = self.group.len() as u64;
        if let Err(e) = self.store.append(self.active, &self.group) {
            self.group.clear();
            if !store::is_storage_full(&e) {
                return Err(e.into());
            }
            // A short write on a full disk: cut it off so the segment ends on a frame.
            let end = self.segments[&self.active].bytes;
            self.store.truncate(self.active, end)?;
            self.next_event_seq = unwritten.first_seq;
            self.disk_free = Some(0);
            for slot in slots {
                results[slot] = Err(SpoolError::DiskFull {
                    free: 0,
                    reserve: self.disk_reserve(),
                });
            }
            return Ok(());
        }
        self.group.clear();
        let seg = self.segments.get_mut(&self.active).expect("active exists");
        seg.bytes += len;
        seg.events.insert_range(
            unwritten.first_seq,
            unwritten.first_seq + slots.len() as u64 - 1,
        );
        seg.live_events += slots.len() as u64;
        seg.last_received_us = seg.last_received_us.max(received_at_us);
        self.total_bytes += len;
        self.dirty = true;
        Ok(())
    }
}
