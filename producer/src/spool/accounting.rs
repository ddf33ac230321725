//! Accounting: acks, and freeing segments once nothing in them is live (spool rule 5,
//! and the dedup window that keeps dead segments a while).

use evd_schemas::SeqRanges;

use super::frame::Frame;
use super::{SegmentStore, Spool, SpoolError};

impl<S: SegmentStore> Spool<S> {
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

    pub(super) fn mark_acked(&mut self, batch_seqs: &SeqRanges) {
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

    pub(super) fn tick(&mut self, now_us: i64) {
        self.now_us = Some(self.now_us.map_or(now_us, |n| n.max(now_us)));
        self.first_now_us.get_or_insert(now_us);
    }

    pub(super) fn free_segments(&mut self) -> Result<(), SpoolError> {
        self.free_dead_segments(false)
    }

    /// Deletes dead segments, oldest first, never the active one, and (with a dedup
    /// window, unless `ignore_window`) only once the window after their newest event
    /// and after open is over.
    pub(super) fn free_dead_segments(&mut self, ignore_window: bool) -> Result<(), SpoolError> {
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
}
