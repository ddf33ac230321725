//! The writer: one thread that owns the spool and the batcher.
//!
//! Each turn of its loop is one **group commit**: take every queued request, append
//! the events, seal the batches that are due, fsync once, and only then reply to the
//! clients and hand the sealed batches to the sender. So a client never hears "ok"
//! before its event is durable, and Kafka never sees a batch whose sealed frame is not
//! durable (spool rule 3). Any spool I/O error ends the thread with an error: the agent
//! must exit rather than continue without durability.

mod append;

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use evd_schemas::wire::batch::{self, BatchMeta};
use evd_schemas::wire::record::put_record;
use evd_schemas::{AgentKeyring, Hour, SeqRanges};
use tokio::sync::oneshot;

use crate::batcher::{Batcher, ReadyBatch};
use crate::clock::Clock;
use crate::dedup::IdWindow;
use crate::metrics::Metrics;
use crate::spool::{
    PendingEvent, RecoveredId, SealedBatch, SegmentStore, Spool, SpoolError, SpoolStats,
};

/// An event that passed validation, waiting for the spool.
#[derive(Debug)]
pub struct Incoming {
    pub event_type: String,
    /// The client's idempotency key (`event_id`), if any.
    pub event_id: Option<String>,
    pub body: Vec<u8>,
}

/// Why the writer refused one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The spool is at its configured size.
    SpoolFull,
    /// The disk under the spool is (nearly) full: `free` bytes left.
    DiskFull { free: u64 },
}

pub enum WriterMsg {
    /// Append events; the reply comes after the fsync that covers them.
    Events {
        events: Vec<Incoming>,
        reply: oneshot::Sender<Vec<Result<u64, Refusal>>>,
    },
    /// End-to-end acks from a consumer.
    Acked(SeqRanges),
    /// Exact bytes of an unacked batch, for a retransmit (`None` once acked).
    ReadSealed {
        batch_seq: u64,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Status(oneshot::Sender<WriterStatus>),
    /// Seal every open batch, sync and stop.
    Shutdown,
}

/// A batch the sender must get into Kafka (and announce to the auditor).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub batch_seq: u64,
    pub event_type: String,
    pub bucket_hour: Hour,
    pub event_count: u32,
    pub sealed_at_ms: i64,
    /// The exact sealed bytes, when the writer has them at hand (a fresh seal);
    /// `None` for batches found in the spool at start, read when their send comes.
    pub bytes: Option<Arc<Vec<u8>>>,
}

pub enum SenderMsg {
    Send(Outgoing),
    Acked(SeqRanges),
}

#[derive(Debug, Clone, Copy)]
pub struct WriterStatus {
    pub spool: SpoolStats,
    /// Earliest hour with events not yet sealed (for `final_before_hour`).
    pub oldest_open_hour: Option<Hour>,
}

pub struct Writer<S: SegmentStore> {
    pub spool: Spool<S>,
    pub batcher: Batcher,
    pub keys: AgentKeyring,
    pub zstd_level: i32,
    pub group_commit_delay: Duration,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub to_sender: tokio::sync::mpsc::UnboundedSender<SenderMsg>,
    /// Client ids made durable within the dedup window.
    pub ids: IdWindow,
    /// What a full disk (spool rule 7) kept from being written: retried every turn.
    pub deferred: Deferred,
}

/// Batches whose sealed frame and acks whose acked frame did not fit on the disk.
#[derive(Default)]
pub struct Deferred {
    unsealed: Vec<ReadyBatch>,
    acks: SeqRanges,
}

impl<S: SegmentStore> Writer<S> {
    /// Feeds recovered state in: pending events to the batcher, unacked batches to the
    /// sender (every unacked batch is sent again after a restart).
    pub fn resume(
        &mut self,
        pending: Vec<PendingEvent>,
        ids: Vec<RecoveredId>,
    ) -> Result<(), SpoolError> {
        let now = self.clock.now_ms();
        // Recovered ids are remembered for a full window from now, as their segments
        // are kept (spool rule 5): the client may resend only once it reconnects.
        let now_us = self.clock.now_us();
        // Tailed lines' ids are positions for the tailer, not client keys.
        for id in ids
            .into_iter()
            .filter(|id| !evd_schemas::tail::is_tail_id(&id.event_id))
        {
            self.ids
                .insert(id.event_id, id.event_seq, id.received_at_us.max(now_us));
        }
        let mut ready = Vec::new();
        for event in pending {
            ready.extend(self.batcher.push(event, now));
        }
        let mut out = self.seal_all(ready)?;
        self.spool.sync()?;
        // Recovered batches go to the sender as metadata: it reads their bytes when a
        // send slot is free, so a full spool is never all in memory.
        let unacked: Vec<_> = self.spool.unacked().cloned().collect();
        for b in unacked {
            if out.iter().any(|o| o.batch_seq == b.batch_seq) {
                continue;
            }
            out.push(Outgoing {
                batch_seq: b.batch_seq,
                event_type: b.event_type,
                bucket_hour: b.bucket_hour,
                event_count: b.event_count,
                sealed_at_ms: b.sealed_at_ms,
                bytes: None,
            });
        }
        out.sort_by_key(|o| o.batch_seq);
        for o in out {
            let _ = self.to_sender.send(SenderMsg::Send(o));
        }
        Ok(())
    }

    /// Runs until `Shutdown` or until every sender of `rx` is gone.
    pub fn run(mut self, rx: Receiver<WriterMsg>) -> Result<(), SpoolError> {
        let mut stop = false;
        while !stop {
            let timeout = self
                .batcher
                .next_deadline_ms()
                .map(|d| Duration::from_millis((d - self.clock.now_ms()).max(0) as u64))
                .unwrap_or(Duration::from_secs(1));
            let mut msgs = Vec::new();
            match rx.recv_timeout(timeout) {
                Ok(m) => msgs.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            if !msgs.is_empty() && !self.group_commit_delay.is_zero() {
                std::thread::sleep(self.group_commit_delay);
            }
            msgs.extend(rx.try_iter().take(10_000));
            stop |= self.turn(msgs)?;
        }
        Ok(())
    }

    /// One group commit. Returns true on shutdown.
    fn turn(&mut self, msgs: Vec<WriterMsg>) -> Result<bool, SpoolError> {
        let now_us = self.clock.now_us();
        let now_ms = now_us.div_euclid(1000);
        let mut replies = Vec::new();
        let mut ready: Vec<ReadyBatch> = Vec::new();
        let mut acked = SeqRanges::new();
        let mut shutdown = false;
        let mut accepted = 0;
        let mut status_replies = Vec::new();
        for msg in msgs {
            match msg {
                WriterMsg::Events { events, reply } => {
                    let results = self.append_events(events, now_us, &mut ready, &mut accepted)?;
                    replies.push((reply, results));
                }
                WriterMsg::Acked(ranges) => {
                    for (a, b) in ranges.iter() {
                        self.deferred.acks.insert_range(a, b);
                    }
                }
                WriterMsg::ReadSealed { batch_seq, reply } => {
                    let _ = reply.send(self.read_sealed_for_send(batch_seq)?);
                }
                // Answered after this turn's batches are handed to the sender.
                WriterMsg::Status(reply) => status_replies.push(reply),
                WriterMsg::Shutdown => shutdown = true,
            }
        }
        self.apply_acks(&mut acked)?;
        self.spool.expire(now_us)?;
        ready.extend(self.batcher.due(now_ms));
        if shutdown {
            ready.extend(self.batcher.drain());
        }
        let out = self.seal_all(ready)?;
        self.spool.sync()?;
        Metrics::add(&self.metrics.fsyncs, 1);
        Metrics::add(&self.metrics.events_accepted, accepted);
        for (reply, results) in replies {
            let _ = reply.send(results);
        }
        for o in out {
            let _ = self.to_sender.send(SenderMsg::Send(o));
        }
        if !acked.is_empty() {
            let _ = self.to_sender.send(SenderMsg::Acked(acked));
        }
        for reply in status_replies {
            let _ = reply.send(WriterStatus {
                spool: self.spool.stats(),
                oldest_open_hour: self.oldest_open_hour(),
            });
        }
        self.publish_gauges(now_ms);
        Ok(shutdown)
    }

    /// Records the acks received (and any a full disk deferred); on a full disk they
    /// wait for the next turn, freeing nothing meanwhile.
    fn apply_acks(&mut self, acked: &mut SeqRanges) -> Result<(), SpoolError> {
        if self.deferred.acks.is_empty() {
            return Ok(());
        }
        match self.spool.ack(&self.deferred.acks) {
            Ok(newly) => {
                self.deferred.acks = SeqRanges::new();
                Metrics::add(&self.metrics.batches_acked, newly.seq_count());
                for (a, b) in newly.iter() {
                    acked.insert_range(a, b);
                }
                Ok(())
            }
            Err(SpoolError::DiskFull { .. }) => {
                Metrics::add(&self.metrics.spool_disk_full_deferrals, 1);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Seals `ready` after the batches a full disk deferred. A batch whose sealed
    /// frame does not fit waits for the next turn (its events stay in the spool).
    fn seal_all(&mut self, ready: Vec<ReadyBatch>) -> Result<Vec<Outgoing>, SpoolError> {
        let mut out = Vec::new();
        let mut queue = std::mem::take(&mut self.deferred.unsealed);
        queue.extend(ready);
        let mut queue = queue.into_iter();
        for r in queue.by_ref() {
            match self.seal(&r) {
                Ok(o) => out.push(o),
                Err(SpoolError::DiskFull { .. }) => {
                    Metrics::add(&self.metrics.spool_disk_full_deferrals, 1);
                    self.deferred.unsealed.push(r);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.deferred.unsealed.extend(queue);
        Ok(out)
    }

    /// Earliest hour with events not sealed yet: open in the batcher, or deferred.
    fn oldest_open_hour(&self) -> Option<Hour> {
        let deferred = self.deferred.unsealed.iter().map(|r| r.bucket_hour);
        self.batcher
            .oldest_open_hour()
            .into_iter()
            .chain(deferred)
            .min()
    }

    /// Seals one batch and appends its sealed frame (durable at the next sync).
    fn seal(&mut self, ready: &ReadyBatch) -> Result<Outgoing, SpoolError> {
        let mut payload = Vec::with_capacity(ready.events.iter().map(|e| e.body.len() + 20).sum());
        let mut events = SeqRanges::new();
        for e in &ready.events {
            put_record(&mut payload, e.event_seq, e.received_at_us, &e.body);
            events.insert(e.event_seq);
        }
        let sealed_at_ms = self.clock.now_ms();
        let meta = BatchMeta {
            agent_id: self.keys.agent_id().to_string(),
            spool_id: self.spool.spool_id(),
            batch_seq: self.spool.allocate_batch_seq(),
            event_type: ready.event_type.clone(),
            bucket_hour: ready.bucket_hour,
            created_at_ms: sealed_at_ms,
            event_count: ready.events.len() as u32,
        };
        let bytes = batch::seal(&self.keys, &meta, &payload, self.zstd_level).map_err(|e| {
            SpoolError::Io(std::io::Error::other(format!("sealing failed (bug): {e}")))
        })?;
        self.spool.append_sealed(SealedBatch {
            batch_seq: meta.batch_seq,
            event_type: &meta.event_type,
            bucket_hour: meta.bucket_hour,
            sealed_at_ms,
            event_count: meta.event_count,
            events: &events,
            bytes: &bytes,
        })?;
        Metrics::add(&self.metrics.batches_sealed, 1);
        Ok(Outgoing {
            batch_seq: meta.batch_seq,
            event_type: meta.event_type,
            bucket_hour: meta.bucket_hour,
            event_count: meta.event_count,
            sealed_at_ms,
            bytes: Some(Arc::new(bytes)),
        })
    }

    fn report_corrupt_sealed(&self, e: &SpoolError) {
        tracing::error!("SPOOL DAMAGE: {e}");
        Metrics::add(&self.metrics.spool_corrupt_sealed_reads, 1);
    }

    fn publish_gauges(&self, now_ms: i64) {
        let s = self.spool.stats();
        let m = &self.metrics;
        Metrics::set(&m.spool_bytes, s.bytes);
        Metrics::set(&m.spool_segments, s.segments as u64);
        Metrics::set(&m.spool_unacked_batches, s.unacked_batches as u64);
        let age_s = s
            .oldest_unacked_ms
            .map_or(0, |t| (now_ms - t).max(0) as u64 / 1000);
        Metrics::set(&m.spool_oldest_unacked_age_seconds, age_s);
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use evd_schemas::{Key, MasterKeyring};

    use super::*;
    use crate::batcher::BatchLimits;
    use crate::clock::SystemClock;
    use crate::spool::{MemStore, SpoolLimits};

    /// A store whose fsync fails once `fail` is set, like a disk going bad.
    struct FailingSync {
        inner: MemStore,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl SegmentStore for FailingSync {
        fn list(&mut self) -> io::Result<Vec<u64>> {
            self.inner.list()
        }
        fn read_all(&mut self, id: u64) -> io::Result<Vec<u8>> {
            self.inner.read_all(id)
        }
        fn read_at(&mut self, id: u64, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            self.inner.read_at(id, offset, len)
        }
        fn create(&mut self, id: u64) -> io::Result<()> {
            self.inner.create(id)
        }
        fn append(&mut self, id: u64, data: &[u8]) -> io::Result<()> {
            self.inner.append(id, data)
        }
        fn sync(&mut self, id: u64) -> io::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::other("EIO"));
            }
            self.inner.sync(id)
        }
        fn truncate(&mut self, id: u64, len: u64) -> io::Result<()> {
            self.inner.truncate(id, len)
        }
        fn remove(&mut self, id: u64) -> io::Result<()> {
            self.inner.remove(id)
        }
    }

    #[test]
    fn an_fsync_error_is_fatal_and_nothing_is_acked() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = FailingSync {
            inner: MemStore::default(),
            fail: fail.clone(),
        };
        let limits = SpoolLimits {
            dedup_window_us: 0,
            max_bytes: 1 << 30,
            segment_bytes: 1 << 20,
        };
        let (spool, _) = Spool::open(store, "a", limits).unwrap();
        let (writer, _sender_rx) = writer_over(spool);
        let (tx, rx) = std::sync::mpsc::channel();
        let (reply_tx, mut reply_rx) = oneshot::channel();
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        tx.send(WriterMsg::Events {
            events: vec![incoming(None)],
            reply: reply_tx,
        })
        .unwrap();
        let result = writer.run(rx);
        assert!(
            matches!(result, Err(SpoolError::Io(_))),
            "{:?}",
            result.err()
        );
        assert!(
            matches!(
                reply_rx.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            ),
            "the client must never hear ok"
        );
    }

    /// Events are written in groups; an id repeated within one request is still a
    /// duplicate of its first copy, as when events came one at a time.
    #[test]
    fn a_repeated_id_within_one_request_is_spooled_once() {
        let limits = SpoolLimits {
            dedup_window_us: 60_000_000,
            max_bytes: 1 << 30,
            segment_bytes: 1 << 20,
        };
        let (spool, _) = Spool::open(MemStore::default(), "a", limits).unwrap();
        let (mut writer, _sender_rx) = writer_over(spool);
        writer.ids = IdWindow::new(60_000_000);
        let events = vec![
            incoming(Some("x")),
            incoming(None),
            incoming(Some("x")),
            incoming(Some("y")),
        ];
        let (mut ready, mut accepted) = (Vec::new(), 0);
        let results = writer
            .append_events(events, 1_000, &mut ready, &mut accepted)
            .unwrap();
        assert_eq!(results, vec![Ok(1), Ok(2), Ok(1), Ok(3)]);
        assert_eq!(accepted, 3);
        assert_eq!(writer.spool.stats().next_event_seq, 4);
        assert_eq!(writer.batcher.open_events(), 3);
    }

    fn incoming(event_id: Option<&str>) -> Incoming {
        Incoming {
            event_type: "T".into(),
            event_id: event_id.map(str::to_string),
            body: b"{}".to_vec(),
        }
    }

    fn writer_over<S: SegmentStore>(
        spool: Spool<S>,
    ) -> (Writer<S>, tokio::sync::mpsc::UnboundedReceiver<SenderMsg>) {
        let (to_sender, sender_rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer {
            spool,
            batcher: Batcher::new(BatchLimits {
                max_events: 10,
                max_bytes: 1 << 20,
                max_age_ms: 100,
            }),
            keys: MasterKeyring::new([(1, Key([1; 32]))]).derive_agent_keyring("a"),
            zstd_level: 1,
            group_commit_delay: Duration::ZERO,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Metrics::default()),
            to_sender,
            ids: IdWindow::new(0),
            deferred: Deferred::default(),
        };
        (writer, sender_rx)
    }
}
