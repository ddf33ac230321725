//! Batching as a pure state machine: events in, batches out, time passed in by the
//! caller. One open batch per (event type, receive hour), so a batch never spans two
//! hours and one busy type never delays another.

use std::collections::BTreeMap;

use evd_schemas::Hour;
use evd_schemas::wire::record::RECORD_OVERHEAD;

use crate::spool::PendingEvent;

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_events: usize,
    /// Uncompressed payload bytes (records with their framing).
    pub max_bytes: usize,
    pub max_age_ms: i64,
}

/// Events ready to be sealed into one batch, in event seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyBatch {
    pub event_type: String,
    pub bucket_hour: Hour,
    pub events: Vec<PendingEvent>,
}

#[derive(Debug)]
struct OpenBatch {
    opened_at_ms: i64,
    bytes: usize,
    events: Vec<PendingEvent>,
}

#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    open: BTreeMap<(String, Hour), OpenBatch>,
}

impl Batcher {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits,
            open: BTreeMap::new(),
        }
    }

    /// Adds a durable event. Returns the batch it filled, if any: a full batch is sealed
    /// before the event that would overflow it, so limits are never exceeded (except by
    /// a single event larger than `max_bytes`, which gets a batch of its own).
    pub fn push(&mut self, event: PendingEvent, now_ms: i64) -> Option<ReadyBatch> {
        let hour = Hour::from_unix_us(event.received_at_us);
        let key = (event.event_type.clone(), hour);
        let size = RECORD_OVERHEAD + event.body.len();
        let mut ready = None;
        if let Some(open) = self.open.get(&key)
            && (open.events.len() >= self.limits.max_events
                || open.bytes + size > self.limits.max_bytes)
        {
            ready = self.take(&key);
        }
        let open = self.open.entry(key).or_insert_with(|| OpenBatch {
            opened_at_ms: now_ms,
            bytes: 0,
            events: Vec::new(),
        });
        open.bytes += size;
        open.events.push(event);
        if ready.is_none() && open.events.len() >= self.limits.max_events {
            let key = (open.events[0].event_type.clone(), hour);
            ready = self.take(&key);
        }
        ready
    }

    fn take(&mut self, key: &(String, Hour)) -> Option<ReadyBatch> {
        let open = self.open.remove(key)?;
        Some(ReadyBatch {
            event_type: key.0.clone(),
            bucket_hour: key.1,
            events: open.events,
        })
    }

    /// Batches whose age reached `max_age_ms`, or whose hour is over.
    pub fn due(&mut self, now_ms: i64) -> Vec<ReadyBatch> {
        let current = Hour::from_unix_ms(now_ms);
        let keys: Vec<(String, Hour)> = self
            .open
            .iter()
            .filter(|((_, hour), open)| {
                now_ms - open.opened_at_ms >= self.limits.max_age_ms || *hour < current
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| self.take(k)).collect()
    }

    /// Every open batch, for a clean shutdown.
    pub fn drain(&mut self) -> Vec<ReadyBatch> {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        keys.iter().filter_map(|k| self.take(k)).collect()
    }

    /// When the next batch becomes due by age.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.open
            .values()
            .map(|o| o.opened_at_ms + self.limits.max_age_ms)
            .min()
    }

    /// The earliest hour with events not yet sealed.
    pub fn oldest_open_hour(&self) -> Option<Hour> {
        self.open.keys().map(|(_, h)| *h).min()
    }

    pub fn open_events(&self) -> usize {
        self.open.values().map(|o| o.events.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_US: i64 = 3_600_000_000;

    fn ev(seq: u64, ty: &str, at_us: i64, len: usize) -> PendingEvent {
        PendingEvent {
            event_seq: seq,
            received_at_us: at_us,
            event_type: ty.into(),
            body: vec![b'x'; len],
        }
    }

    fn batcher() -> Batcher {
        Batcher::new(BatchLimits {
            max_events: 3,
            max_bytes: 200,
            max_age_ms: 100,
        })
    }

    #[test]
    fn seals_at_count_per_type() {
        let mut b = batcher();
        assert!(b.push(ev(1, "A", 0, 1), 0).is_none());
        assert!(b.push(ev(2, "B", 0, 1), 0).is_none());
        assert!(b.push(ev(3, "A", 0, 1), 0).is_none());
        let ready = b.push(ev(4, "A", 0, 1), 0).unwrap();
        assert_eq!(
            ready.events.iter().map(|e| e.event_seq).collect::<Vec<_>>(),
            [1, 3, 4]
        );
        assert_eq!(b.open_events(), 1);
    }

    #[test]
    fn seals_before_exceeding_bytes() {
        let mut b = batcher();
        assert!(b.push(ev(1, "A", 0, 100), 0).is_none());
        let ready = b.push(ev(2, "A", 0, 100), 0).unwrap();
        assert_eq!(
            ready.events.len(),
            1,
            "the overflowing event starts the next batch"
        );
    }

    #[test]
    fn a_batch_never_spans_two_hours() {
        let mut b = batcher();
        // Both pushed 50 ms before the check: neither is due by age yet.
        b.push(ev(1, "A", HOUR_US - 1, 1), 3_599_990);
        b.push(ev(2, "A", HOUR_US, 1), 3_599_990);
        let due = b.due(3_600_000);
        assert_eq!(due.len(), 1, "the hour-0 batch is due once hour 1 begins");
        assert_eq!(due[0].bucket_hour, Hour(0));
        let rest = b.due(3_599_990 + 100);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].bucket_hour, Hour(1));
    }

    #[test]
    fn seals_at_age() {
        let mut b = batcher();
        b.push(ev(1, "A", 0, 1), 10);
        assert!(b.due(109).is_empty());
        assert_eq!(b.next_deadline_ms(), Some(110));
        assert_eq!(b.due(110).len(), 1);
        assert_eq!(b.next_deadline_ms(), None);
    }
}
