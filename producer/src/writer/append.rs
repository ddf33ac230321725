//! The writer's two spool calls on a client's behalf: appending events (deduplicated by
//! client id, refused when the spool or disk is full) and reading a sealed batch back
//! for a (re)send.

use super::{
    Incoming, Metrics, PendingEvent, ReadyBatch, Refusal, SegmentStore, SpoolError, Writer,
};

impl<S: SegmentStore> Writer<S> {
    /// Appends `events` to the spool (not yet synced: the turn syncs once for all),
    /// each answered by its event seq or a refusal; batches they complete go to
    /// `ready`. An I/O error is returned: nothing of this turn may be acked.
    pub(super) fn append_events(
        &mut self,
        events: Vec<Incoming>,
        now_us: i64,
        ready: &mut Vec<ReadyBatch>,
        accepted: &mut u64,
    ) -> Result<Vec<Result<u64, Refusal>>, SpoolError> {
        let now_ms = now_us.div_euclid(1000);
        let mut results = Vec::with_capacity(events.len());
        for ev in events {
            if let Some(seq) = ev
                .event_id
                .as_deref()
                .and_then(|id| self.ids.get(id, now_us))
            {
                // A resend of an event already durable: the first copy's seq.
                Metrics::add(&self.metrics.duplicate_ids, 1);
                results.push(Ok(seq));
                continue;
            }
            match self.spool.append_event(now_us, &ev.event_type, &ev.body) {
                Ok(seq) => {
                    *accepted += 1;
                    results.push(Ok(seq));
                    if let Some(id) = ev.event_id {
                        self.ids.insert(id, seq, now_us);
                    }
                    let pending = PendingEvent {
                        event_seq: seq,
                        received_at_us: now_us,
                        event_type: ev.event_type,
                        body: ev.body,
                    };
                    ready.extend(self.batcher.push(pending, now_ms));
                }
                Err(SpoolError::Full { .. }) => {
                    Metrics::add(&self.metrics.refused_spool_full, 1);
                    results.push(Err(Refusal::SpoolFull));
                }
                Err(SpoolError::DiskFull { free, .. }) => {
                    Metrics::add(&self.metrics.refused_spool_full, 1);
                    results.push(Err(Refusal::DiskFull { free }));
                }
                Err(fatal) => return Err(fatal),
            }
        }
        Ok(results)
    }

    /// A sealed batch's bytes for the sender; `None` when the spool no longer holds it
    /// (acked meanwhile) or its frame fails its checksum (reported, not sent).
    pub(super) fn read_sealed_for_send(
        &mut self,
        batch_seq: u64,
    ) -> Result<Option<Vec<u8>>, SpoolError> {
        match self.spool.read_sealed(batch_seq) {
            Ok(b) => Ok(Some(b)),
            Err(SpoolError::UnknownBatch(_)) => Ok(None),
            Err(e @ SpoolError::CorruptSealed(_)) => {
                self.report_corrupt_sealed(&e);
                Ok(None)
            }
            Err(fatal) => Err(fatal),
        }
    }
}
