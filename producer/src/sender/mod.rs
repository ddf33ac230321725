//! The sender: gets sealed batches into Kafka and keeps sending them until acked.
//!
//! Per batch: announce it on the audit topic, wait for that delivery, then produce the
//! batch to its event type's topic (idempotent producer, `acks=all`, key = agent id),
//! retrying every error. Announcing first means a consumer can only ack a batch the
//! auditor has been told about. A batch not acked `retransmit_after` after its last send
//! is sent again with the exact bytes from the spool. Heartbeats carry
//! `final_before_hour`: no batch of an earlier hour remains unannounced.
//!
//! Which batch is where, when one is due again and the watermark are the pure
//! [`tracker`]; this module is its async shell (send slots, the spool, Kafka), and
//! `job` one batch's send task.

mod job;
pub mod tracker;

use std::sync::mpsc::Sender as StdSender;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use evd_schemas::Registry;
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::writer::{SenderMsg, WriterMsg};
use job::{SendJob, TaskReport};
use tracker::{SendStart, SendTracker};

/// Batches being sent at once. Each send holds its batch's bytes (and librdkafka a
/// copy), so this with [`WAITING_BYTES_BUDGET`] bounds the sender's memory, whatever
/// the spool holds.
const SENDS_IN_FLIGHT: usize = 32;
/// Bytes of sealed batches kept in memory while they wait for a send slot. A batch
/// beyond it (and every batch found in the spool at start) waits as metadata only and
/// is read again from the spool when its turn comes.
const WAITING_BYTES_BUDGET: usize = 32 << 20;

pub struct SenderSettings {
    pub agent_id: String,
    /// The spool's incarnation, carried in every audit record.
    pub spool_id: evd_schemas::SpoolId,
    /// Signs audit records (`wire::control_tag`).
    pub keys: evd_schemas::AgentKeyring,
    pub producer_config: ClientConfig,
    pub audit_topic: String,
    pub retransmit_after: Duration,
    pub heartbeat_interval: Duration,
    pub started_at_ms: i64,
}

pub struct Sender {
    settings: SenderSettings,
    registry: Arc<RwLock<Arc<Registry>>>,
    to_writer: StdSender<WriterMsg>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    producer: Arc<RwLock<Arc<FutureProducer>>>,
    tracker: SendTracker,
    permits: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<TaskReport>,
}

impl Sender {
    pub fn new(
        settings: SenderSettings,
        registry: Arc<RwLock<Arc<Registry>>>,
        to_writer: StdSender<WriterMsg>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = Arc::new(settings.producer_config.create::<FutureProducer>()?);
        let (reports, _) = mpsc::unbounded_channel();
        let tracker = SendTracker::new(
            settings.retransmit_after.as_millis() as i64,
            settings.started_at_ms,
            WAITING_BYTES_BUDGET,
        );
        Ok(Sender {
            settings,
            registry,
            to_writer,
            clock,
            metrics,
            producer: Arc::new(RwLock::new(producer)),
            tracker,
            permits: Arc::new(Semaphore::new(SENDS_IN_FLIGHT)),
            reports,
        })
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<SenderMsg>) {
        let (report_tx, mut reports) = mpsc::unbounded_channel::<TaskReport>();
        self.reports = report_tx;
        let mut retransmit_tick = tokio::time::interval(Duration::from_millis(500));
        let mut heartbeat_tick = tokio::time::interval(self.settings.heartbeat_interval);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Some(report) = reports.recv() => match report {
                    TaskReport::Announced(seq) => self.tracker.announced(seq),
                    TaskReport::Sent(seq) => {
                        Metrics::add(&self.metrics.batches_sent, 1);
                        self.tracker.sent(seq, self.clock.now_ms());
                        self.dispatch().await;
                    }
                },
                _ = retransmit_tick.tick() => {
                    self.tracker.queue_due_retransmits(self.clock.now_ms());
                    self.dispatch().await;
                }
                _ = heartbeat_tick.tick() => self.heartbeat(&mut rx).await,
            }
        }
        // Let queued messages go out before the process exits.
        let producer = self.current_producer();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    }

    /// A message from the writer: a batch to send, or acked batches to stop tracking.
    async fn handle(&mut self, msg: SenderMsg) {
        match msg {
            SenderMsg::Send(out) => {
                self.tracker.sealed(out, self.clock.now_ms());
                self.dispatch().await;
            }
            SenderMsg::Acked(seqs) => {
                for ms in self.tracker.acked(&seqs, self.clock.now_ms()) {
                    self.metrics.end_to_end_ack_seconds.observe_ms(ms);
                }
            }
        }
    }

    fn current_producer(&self) -> Arc<FutureProducer> {
        self.producer.read().expect("producer lock").clone()
    }

    fn topic_for(&self, event_type: &str) -> String {
        let registry = self.registry.read().expect("registry lock").clone();
        registry
            .get(event_type)
            .map(|t| t.topic())
            .unwrap_or_else(|| format!("evd.events.{event_type}"))
    }

    /// Starts sends for waiting batches, oldest first, while slots are free; bytes not
    /// held are read again from the spool (a batch acked meanwhile is dropped).
    async fn dispatch(&mut self) {
        while let Some(seq) = self.tracker.next_waiting() {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            let bytes = match self.tracker.take_waiting(seq) {
                Some(bytes) => bytes,
                None => match self.read_sealed(seq).await {
                    Some(bytes) => Arc::new(bytes),
                    None => {
                        self.tracker.forget(seq);
                        continue;
                    }
                },
            };
            if let Some(start) = self.tracker.start(seq) {
                self.start_send(seq, start, bytes, permit);
            }
        }
        let m = &self.metrics;
        Metrics::set(&m.sends_waiting, self.tracker.waiting() as u64);
        Metrics::set(
            &m.sends_in_flight,
            (SENDS_IN_FLIGHT - self.permits.available_permits()) as u64,
        );
        Metrics::set(&m.send_bytes_held, self.tracker.held_bytes() as u64);
    }

    /// The sealed bytes of `seq` from the writer; `None` once acked (or unreadable).
    async fn read_sealed(&self, batch_seq: u64) -> Option<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.to_writer
            .send(WriterMsg::ReadSealed { batch_seq, reply })
            .ok()?;
        rx.await.ok().flatten()
    }

    fn start_send(
        &self,
        seq: u64,
        start: SendStart,
        bytes: Arc<Vec<u8>>,
        permit: OwnedSemaphorePermit,
    ) {
        if start.retransmit {
            Metrics::add(&self.metrics.batches_retransmitted, 1);
        }
        let announcement = AuditRecord {
            agent_id: self.settings.agent_id.clone(),
            spool_id: self.settings.spool_id,
            at_ms: self.clock.now_ms(),
            body: AuditBody::Announcement(Announcement {
                event_type: start.event_type.clone(),
                bucket_hour: start.bucket_hour,
                batch_seq: seq,
                event_count: start.event_count,
            }),
        }
        .encode(&self.settings.keys)
        .expect("agent ids and type names were checked, the keyring is this agent's");
        let job = SendJob {
            producer: self.producer.clone(),
            permanent_retry: self.settings.retransmit_after,
            producer_config: self.settings.producer_config.clone(),
            metrics: self.metrics.clone(),
            key: self.settings.agent_id.clone(),
            audit_topic: self.settings.audit_topic.clone(),
            topic: self.topic_for(&start.event_type),
            announce: start.announce,
            announcement,
            batch_seq: seq,
            bytes,
        };
        let reports = self.reports.clone();
        tokio::spawn(async move {
            job.run(reports).await;
            drop(permit);
        });
    }

    async fn heartbeat(&mut self, rx: &mut mpsc::UnboundedReceiver<SenderMsg>) {
        let (tx, status_rx) = oneshot::channel();
        if self.to_writer.send(WriterMsg::Status(tx)).is_err() {
            return;
        }
        let Ok(status) = status_rx.await else { return };
        // The writer hands over sealed batches before it answers, so take them now.
        while let Ok(msg) = rx.try_recv() {
            self.handle(msg).await;
        }
        let now = self.clock.now_ms();
        let final_before_hour = self.tracker.final_before_hour(now, status.oldest_open_hour);
        let record = AuditRecord {
            agent_id: self.settings.agent_id.clone(),
            spool_id: self.settings.spool_id,
            at_ms: now,
            body: AuditBody::Heartbeat(Heartbeat {
                started_at_ms: self.settings.started_at_ms,
                spool_bytes: status.spool.bytes,
                unacked_batches: status.spool.unacked_batches as u64,
                oldest_unacked_ms: status.spool.oldest_unacked_ms.unwrap_or(0),
                next_batch_seq: status.spool.next_batch_seq,
                final_before_hour,
            }),
        }
        .encode(&self.settings.keys)
        .expect("agent id was checked, the keyring is this agent's");
        let producer = self.current_producer();
        let record = FutureRecord::to(&self.settings.audit_topic)
            .key(self.settings.agent_id.as_bytes())
            .payload(&record);
        // Heartbeats are periodic: a lost one is replaced by the next. Enqueued, never
        // awaited: with Kafka down a delivery takes up to `message.timeout.ms`, and this
        // loop must keep taking sealed batches meanwhile (it once did not, and every
        // batch sealed during an outage waited in memory).
        let _ = producer.send_result(record);
    }
}
