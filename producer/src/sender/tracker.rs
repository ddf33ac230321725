//! The sender's core: every batch between sealed and acked. Pure: no I/O, times in
//! ms passed by the caller.
//!
//! A batch goes `Waiting` (queued for a send slot) → `InFlight` (a send task runs:
//! announce once, then produce) → `Sent` (Kafka has it; waiting for the end-to-end
//! ack) → gone (acked). A `Sent` batch whose ack is overdue
//! ([`retransmit_wait_ms`]) is `Waiting` again. Its bytes are held in memory while
//! they fit in the budget, else read again from the spool when its turn comes.
//!
//! The heartbeat's watermark, [`SendTracker::final_before_hour`], promises the
//! auditor that no batch of an earlier hour will ever be announced for the first time
//! (the auditor closes hours on it): it never passes the hour of a batch not yet
//! announced, nor the oldest hour the writer has not sealed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use evd_schemas::{Hour, SeqRanges};

use crate::writer::Outgoing;

#[derive(Debug)]
struct Tracked {
    event_type: String,
    bucket_hour: Hour,
    event_count: u32,
    sealed_at_ms: i64,
    announced: bool,
    phase: Phase,
    last_sent_ms: i64,
    sends: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    InFlight,
    Sent,
}

/// What a send task needs to know about the batch it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendStart {
    pub event_type: String,
    pub bucket_hour: Hour,
    pub event_count: u32,
    pub sealed_at_ms: i64,
    /// Announce it first (no announcement was confirmed yet).
    pub announce: bool,
    /// A send of a batch sent before, or found in the spool at start.
    pub retransmit: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct SendTracker {
    tracked: BTreeMap<u64, Tracked>,
    /// Batches waiting for a send slot, oldest seq first.
    waiting: BTreeSet<u64>,
    held: BTreeMap<u64, Arc<Vec<u8>>>,
    held_bytes: usize,
    held_budget_bytes: usize,
    retransmit_after_ms: i64,
    started_at_ms: i64,
    /// When the last end-to-end ack arrived: acks flowing (one within two retransmit
    /// intervals) mean the pipeline works and a missing one was lost, so it is
    /// retransmitted without backing off.
    last_ack_ms: i64,
}

impl SendTracker {
    pub fn new(retransmit_after_ms: i64, started_at_ms: i64, held_budget_bytes: usize) -> Self {
        SendTracker {
            tracked: BTreeMap::new(),
            waiting: BTreeSet::new(),
            held: BTreeMap::new(),
            held_bytes: 0,
            held_budget_bytes,
            retransmit_after_ms,
            started_at_ms,
            last_ack_ms: i64::MIN,
        }
    }

    /// A batch sealed (or found in the spool): queued for a send slot, once — a batch
    /// already waiting or in flight stays so. Its bytes are kept while they fit.
    pub fn sealed(&mut self, out: Outgoing, now_ms: i64) {
        let entry = self
            .tracked
            .entry(out.batch_seq)
            .or_insert_with(|| Tracked {
                event_type: out.event_type.clone(),
                bucket_hour: out.bucket_hour,
                event_count: out.event_count,
                sealed_at_ms: out.sealed_at_ms,
                announced: false,
                phase: Phase::Sent,
                last_sent_ms: now_ms,
                sends: 0,
            });
        if entry.phase != Phase::Sent {
            return;
        }
        entry.phase = Phase::Waiting;
        self.waiting.insert(out.batch_seq);
        if let Some(bytes) = out.bytes
            && self.held_bytes + bytes.len() <= self.held_budget_bytes
        {
            self.held_bytes += bytes.len();
            self.held.insert(out.batch_seq, bytes);
        }
    }

    /// End-to-end acks: those batches are done. Returns, per batch that was tracked,
    /// the ms from its seal to this ack.
    pub fn acked(&mut self, seqs: &SeqRanges, now_ms: i64) -> Vec<i64> {
        self.last_ack_ms = now_ms;
        let mut latencies = Vec::new();
        for (a, b) in seqs.iter() {
            let done: Vec<u64> = self.tracked.range(a..=b).map(|(&s, _)| s).collect();
            for s in done {
                if let Some(t) = self.tracked.remove(&s) {
                    latencies.push(now_ms - t.sealed_at_ms);
                }
                self.waiting.remove(&s);
                self.drop_held(s);
            }
        }
        latencies
    }

    /// The oldest waiting batch, if any.
    pub fn next_waiting(&self) -> Option<u64> {
        self.waiting.first().copied()
    }

    /// Takes `seq` off the wait queue for a send; its bytes if they were held.
    pub fn take_waiting(&mut self, seq: u64) -> Option<Arc<Vec<u8>>> {
        self.waiting.remove(&seq);
        self.drop_held(seq)
    }

    /// The batch's bytes are gone from the spool (acked meanwhile): stop tracking it.
    pub fn forget(&mut self, seq: u64) {
        self.tracked.remove(&seq);
        self.waiting.remove(&seq);
        self.drop_held(seq);
    }

    /// A send task starts for `seq` (taken off the queue); `None` if it is not tracked.
    pub fn start(&mut self, seq: u64) -> Option<SendStart> {
        let t = self.tracked.get_mut(&seq)?;
        t.phase = Phase::InFlight;
        t.sends += 1;
        Some(SendStart {
            event_type: t.event_type.clone(),
            bucket_hour: t.bucket_hour,
            event_count: t.event_count,
            sealed_at_ms: t.sealed_at_ms,
            announce: !t.announced,
            retransmit: t.sends > 1 || t.sealed_at_ms < self.started_at_ms,
        })
    }

    /// The audit topic confirmed the batch's announcement.
    pub fn announced(&mut self, seq: u64) {
        if let Some(t) = self.tracked.get_mut(&seq) {
            t.announced = true;
        }
    }

    /// Kafka confirmed the batch.
    pub fn sent(&mut self, seq: u64, now_ms: i64) {
        if let Some(t) = self.tracked.get_mut(&seq) {
            t.phase = Phase::Sent;
            t.last_sent_ms = now_ms;
        }
    }

    /// Queues again every sent batch whose ack is overdue; returns how many.
    pub fn queue_due_retransmits(&mut self, now_ms: i64) -> usize {
        let after = self.retransmit_after_ms;
        // Back off only while the pipeline looks stalled: no ack at all for two
        // retransmit intervals. A lost ack among flowing ones is resent at once.
        let stalled = now_ms.saturating_sub(self.last_ack_ms) > 2 * after;
        let mut queued = 0;
        for (&seq, t) in &mut self.tracked {
            let sends = if stalled { t.sends } else { 1 };
            if t.phase == Phase::Sent
                && now_ms - t.last_sent_ms >= retransmit_wait_ms(after, sends, seq)
            {
                t.phase = Phase::Waiting;
                self.waiting.insert(seq);
                queued += 1;
            }
        }
        queued
    }

    /// The heartbeat's watermark (module docs): the earliest of the current hour, the
    /// writer's oldest unsealed hour and the hour of every batch not yet announced.
    pub fn final_before_hour(&self, now_ms: i64, oldest_unsealed: Option<Hour>) -> Hour {
        let unannounced = self
            .tracked
            .values()
            .filter(|t| !t.announced)
            .map(|t| t.bucket_hour)
            .min();
        [
            Some(Hour::from_unix_ms(now_ms)),
            oldest_unsealed,
            unannounced,
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the current hour is always there")
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    fn drop_held(&mut self, seq: u64) -> Option<Arc<Vec<u8>>> {
        let bytes = self.held.remove(&seq)?;
        self.held_bytes -= bytes.len();
        Some(bytes)
    }
}

/// How long after its `sends`-th send a batch's missing ack makes it due again:
/// `base_ms` after the first send, doubling with each further send up to 8 times
/// `base_ms`, spread by ±20% (a fixed draw per batch seq) so the batches of one outage
/// do not come back as one wave. A broker or consumer that recovers slowly is not met
/// by a retransmit storm. (The tracker counts sends only while no ack at all arrived
/// for two intervals: with acks flowing, a missing one was lost and is due after
/// `base_ms` again.)
pub fn retransmit_wait_ms(base_ms: i64, sends: u32, batch_seq: u64) -> i64 {
    let doubled = base_ms.saturating_mul(1 << sends.saturating_sub(1).min(3));
    let draw = batch_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    let spread = 0.8 + 0.4 * draw as f64 / 1024.0;
    (doubled as f64 * spread) as i64
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
