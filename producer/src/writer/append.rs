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
    ///
    /// Events go to the spool in runs, one write each; a run ends before an
    /// `event_id` it already holds, so the repeat is answered as a duplicate of the
    /// first, as if the events had come one at a time.
    pub(super) fn append_events(
        &mut self,
        events: Vec<Incoming>,
        now_us: i64,
        ready: &mut Vec<ReadyBatch>,
        accepted: &mut u64,
    ) -> Result<Vec<Result<u64, Refusal>>, SpoolError> {
        let now_ms = now_us.div_euclid(1000);
        // Each event's answer, and whether it was appended now (not a duplicate).
        let mut answers: Vec<(Result<u64, Refusal>, bool)> = Vec::with_capacity(events.len());
        let mut next = 0;
        while next < events.len() {
            let mut run = Vec::new();
            let mut run_ids = std::collections::HashSet::new();
            while let Some(ev) = events.get(next) {
                if let Some(id) = ev.event_id.as_deref() {
                    if let Some(seq) = self.ids.get(id, now_us) {
                        // A resend of an event already durable: the first copy's seq.
                        Metrics::add(&self.metrics.duplicate_ids, 1);
                        answers.push((Ok(seq), false));
                        next += 1;
                        continue;
                    }
                    if !run_ids.insert(id) {
                        break;
                    }
                }
                run.push(next);
                answers.push((Err(Refusal::SpoolFull), false));
                next += 1;
            }
            let bodies = run
                .iter()
                .map(|&i| (events[i].event_type.as_str(), events[i].body.as_slice()));
            let results = self.spool.append_events(now_us, bodies)?;
            for (&i, result) in run.iter().zip(results) {
                answers[i] = match result {
                    Ok(seq) => {
                        *accepted += 1;
                        if let Some(id) = &events[i].event_id {
                            self.ids.insert(id.clone(), seq, now_us);
                        }
                        (Ok(seq), true)
                    }
                    Err(SpoolError::Full { .. }) => {
                        Metrics::add(&self.metrics.refused_spool_full, 1);
                        (Err(Refusal::SpoolFull), false)
                    }
                    Err(SpoolError::DiskFull { free, .. }) => {
                        Metrics::add(&self.metrics.refused_spool_full, 1);
                        (Err(Refusal::DiskFull { free }), false)
                    }
                    Err(fatal) => return Err(fatal),
                };
            }
        }
        let mut results = Vec::with_capacity(events.len());
        for (ev, (answer, appended)) in events.into_iter().zip(answers) {
            if let (Ok(seq), true) = (&answer, appended) {
                let pending = PendingEvent {
                    event_seq: *seq,
                    received_at_us: now_us,
                    event_type: ev.event_type,
                    body: ev.body,
                };
                ready.extend(self.batcher.push(pending, now_ms));
            }
            results.push(answer);
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
