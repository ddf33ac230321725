//! Settling batches: a batch announced and then landed whole, once, in its own hour's
//! folder (nearly every batch) is **settled**: its cell counts its events as published
//! and delivered, and the state forgets it, keeping only its seq in its incarnation's
//! settled ranges (contiguous in the usual case: one range per incarnation). Memory
//! then grows with the batches in flight or in trouble, not with the window
//! (`docs/capacity.md`). A settled batch adds to its cell exactly what its per-batch
//! entry would have, with one difference: rows that land for it *again* count as
//! duplicates in the cell of the folder they land in (its own, unless a consumer moved
//! them to a later hour), since which cell it belonged to is no longer kept.

use evd_schemas::Hour;
use evd_schemas::wire::audit::Announcement;

use super::landed::{Landed, OriginRef};
use super::{AuditState, Origin};

/// One incarnation's batches in one (type, hour).
#[derive(Debug, Default, Clone)]
pub(super) struct CellBatches {
    /// Seqs announced and not settled; seqs settled since the last tidy are still
    /// here, without a per-batch entry (readers skip them).
    pub(super) seqs: Vec<u64>,
    stale: usize,
    /// Events of the batches settled in this cell.
    pub(super) settled_events: u64,
    /// Rows that landed in this cell's folder for batches already settled.
    pub(super) extra_rows: u64,
}

impl CellBatches {
    /// Counts a settled batch; tidies `seqs` once half of it is settled.
    fn settle(&mut self, events: u32, unsettled: impl Fn(u64) -> bool) {
        self.settled_events += u64::from(events);
        self.stale += 1;
        if self.stale * 2 > self.seqs.len() {
            self.seqs.retain(|s| unsettled(*s));
            self.stale = 0;
        }
    }
}

/// A batch announced and not settled yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) events: u32,
    pub(super) hour: Hour,
    /// Index of its event type in `AuditState::type_names`.
    type_id: u32,
}

/// Whether rows `landed` are exactly one whole landing of a batch of `events` events
/// in `hour`'s folder.
fn whole_in(landed: &Landed, hour: Hour, events: u32) -> bool {
    matches!(landed, Landed::One((h, rows)) if *h == hour && *rows == u64::from(events))
}

impl AuditState {
    fn type_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.type_ids.get(name) {
            return id;
        }
        let id = self.type_names.len() as u32;
        self.type_names.push(name.to_string());
        self.type_ids.insert(name.to_string(), id);
        id
    }

    fn is_settled(&self, origin: &Origin, seq: u64) -> bool {
        self.settled.get(origin).is_some_and(|s| s.contains(seq))
    }

    /// An announcement of batch `seq`. Returns false when it was already known
    /// (announcements are idempotent per seq).
    pub(super) fn announce(&mut self, origin: OriginRef, a: &Announcement) -> bool {
        let key = (origin.clone(), a.batch_seq);
        if self.batches.contains_key(&key) || self.is_settled(&origin, a.batch_seq) {
            return false;
        }
        let type_id = self.type_id(&a.event_type);
        let cell = self
            .by_hour
            .entry((a.event_type.clone(), a.bucket_hour))
            .or_default()
            .entry(origin.clone())
            .or_default();
        if self
            .landed
            .get(&key)
            .is_some_and(|l| whole_in(l, a.bucket_hour, a.event_count))
        {
            self.landed.remove(&key);
            cell.settled_events += u64::from(a.event_count);
            self.settled.entry(origin).or_default().insert(a.batch_seq);
            return true;
        }
        cell.seqs.push(a.batch_seq);
        let pending = Pending {
            events: a.event_count,
            hour: a.bucket_hour,
            type_id,
        };
        self.batches.insert(key, pending);
        true
    }

    /// `rows` of batch `seq` found in a file of `event_type` in `folder`'s folder.
    pub(super) fn land(
        &mut self,
        origin: OriginRef,
        seq: u64,
        rows: u64,
        event_type: &str,
        folder: Hour,
    ) {
        if self.is_settled(&origin, seq) {
            self.by_hour
                .entry((event_type.to_string(), folder))
                .or_default()
                .entry(origin)
                .or_default()
                .extra_rows += rows;
            return;
        }
        let key = (origin.clone(), seq);
        let landed = self
            .landed
            .entry(key.clone())
            .and_modify(|l| l.add(folder, rows))
            .or_insert(Landed::One((folder, rows)));
        let Some(&pending) = self.batches.get(&key) else {
            return; // not announced yet: settled when it is, if whole
        };
        if !whole_in(landed, pending.hour, pending.events)
            || self.type_names[pending.type_id as usize] != event_type
        {
            return;
        }
        self.landed.remove(&key);
        self.batches.remove(&key);
        let batches = &self.batches;
        if let Some(cell) = self
            .by_hour
            .get_mut(&(event_type.to_string(), pending.hour))
            .and_then(|m| m.get_mut(&origin))
        {
            cell.settle(pending.events, |s| {
                batches.contains_key(&(origin.clone(), s))
            });
        }
        self.settled.entry(origin).or_default().insert(seq);
    }
}
