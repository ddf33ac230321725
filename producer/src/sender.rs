//! The sender: gets sealed batches into Kafka and keeps sending them until acked.
//!
//! Per batch: announce it on the audit topic, wait for that delivery, then produce the
//! batch to its event type's topic (idempotent producer, `acks=all`, key = agent id),
//! retrying every error. Announcing first means a consumer can only ack a batch the
//! auditor has been told about. A batch not acked `retransmit_after` after its last send
//! is sent again with the exact bytes from the spool. Heartbeats carry
//! `final_before_hour`: no batch of an earlier hour remains unannounced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::Sender as StdSender;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, Registry};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::writer::{Outgoing, SenderMsg, WriterMsg};

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
    /// Queued for a send slot.
    Waiting,
    /// A send task runs.
    InFlight,
    /// Delivered to Kafka; waiting for the consumer's end-to-end ack.
    Sent,
}

enum TaskReport {
    Announced(u64),
    Sent(u64),
}

pub struct Sender {
    settings: SenderSettings,
    registry: Arc<RwLock<Arc<Registry>>>,
    to_writer: StdSender<WriterMsg>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    producer: Arc<RwLock<Arc<FutureProducer>>>,
    tracked: BTreeMap<u64, Tracked>,
    /// Batches waiting for a send slot, oldest seq first.
    waiting: BTreeSet<u64>,
    /// Bytes of waiting batches, within [`WAITING_BYTES_BUDGET`].
    held: BTreeMap<u64, Arc<Vec<u8>>>,
    held_bytes: usize,
    permits: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<TaskReport>,
    /// When the last end-to-end ack arrived: acks flowing (one within two retransmit
    /// intervals) mean the pipeline works and a missing one was lost, so it is
    /// retransmitted without backing off.
    last_ack_ms: i64,
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
        Ok(Sender {
            settings,
            registry,
            to_writer,
            clock,
            metrics,
            producer: Arc::new(RwLock::new(producer)),
            tracked: BTreeMap::new(),
            waiting: BTreeSet::new(),
            held: BTreeMap::new(),
            held_bytes: 0,
            permits: Arc::new(Semaphore::new(SENDS_IN_FLIGHT)),
            reports,
            last_ack_ms: i64::MIN,
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
                    TaskReport::Announced(seq) => {
                        if let Some(t) = self.tracked.get_mut(&seq) {
                            t.announced = true;
                        }
                    }
                    TaskReport::Sent(seq) => {
                        Metrics::add(&self.metrics.batches_sent, 1);
                        if let Some(t) = self.tracked.get_mut(&seq) {
                            t.phase = Phase::Sent;
                            t.last_sent_ms = self.clock.now_ms();
                        }
                        self.dispatch().await;
                    }
                },
                _ = retransmit_tick.tick() => self.retransmit_due().await,
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
                self.enqueue(out);
                self.dispatch().await;
            }
            SenderMsg::Acked(seqs) => {
                self.last_ack_ms = self.clock.now_ms();
                for (a, b) in seqs.iter() {
                    let done: Vec<u64> = self.tracked.range(a..=b).map(|(&s, _)| s).collect();
                    for s in done {
                        if let Some(t) = self.tracked.remove(&s) {
                            self.metrics
                                .end_to_end_ack_seconds
                                .observe_ms(self.last_ack_ms - t.sealed_at_ms);
                        }
                        self.waiting.remove(&s);
                        if let Some(bytes) = self.held.remove(&s) {
                            self.held_bytes -= bytes.len();
                        }
                    }
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

    /// Queues a batch for a send slot (once: a batch waiting or in flight stays so),
    /// keeping its bytes while they fit in the budget.
    fn enqueue(&mut self, out: Outgoing) {
        let now = self.clock.now_ms();
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
                last_sent_ms: now,
                sends: 0,
            });
        if entry.phase != Phase::Sent {
            return;
        }
        entry.phase = Phase::Waiting;
        self.waiting.insert(out.batch_seq);
        if let Some(bytes) = out.bytes
            && self.held_bytes + bytes.len() <= WAITING_BYTES_BUDGET
        {
            self.held_bytes += bytes.len();
            self.held.insert(out.batch_seq, bytes);
        }
    }

    /// Starts sends for waiting batches, oldest first, while slots are free; bytes not
    /// held are read again from the spool (a batch acked meanwhile is dropped).
    async fn dispatch(&mut self) {
        self.start_waiting().await;
        let m = &self.metrics;
        Metrics::set(&m.sends_waiting, self.waiting.len() as u64);
        Metrics::set(
            &m.sends_in_flight,
            (SENDS_IN_FLIGHT - self.permits.available_permits()) as u64,
        );
        Metrics::set(&m.send_bytes_held, self.held_bytes as u64);
    }

    async fn start_waiting(&mut self) {
        while let Some(&seq) = self.waiting.first() {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return;
            };
            self.waiting.remove(&seq);
            let bytes = match self.held.remove(&seq) {
                Some(bytes) => {
                    self.held_bytes -= bytes.len();
                    bytes
                }
                None => match self.read_sealed(seq).await {
                    Some(bytes) => Arc::new(bytes),
                    None => {
                        self.tracked.remove(&seq);
                        continue;
                    }
                },
            };
            self.start_send(seq, bytes, permit);
        }
    }

    /// The sealed bytes of `seq` from the writer; `None` once acked (or unreadable).
    async fn read_sealed(&self, batch_seq: u64) -> Option<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.to_writer
            .send(WriterMsg::ReadSealed { batch_seq, reply })
            .ok()?;
        rx.await.ok().flatten()
    }

    fn start_send(&mut self, seq: u64, bytes: Arc<Vec<u8>>, permit: OwnedSemaphorePermit) {
        let now = self.clock.now_ms();
        let Some(entry) = self.tracked.get(&seq) else {
            return;
        };
        let topic = self.topic_for(&entry.event_type);
        let entry = self.tracked.get_mut(&seq).expect("looked up above");
        entry.phase = Phase::InFlight;
        entry.sends += 1;
        if entry.sends > 1 || entry.sealed_at_ms < self.settings.started_at_ms {
            Metrics::add(&self.metrics.batches_retransmitted, 1);
        }
        let out = Outgoing {
            batch_seq: seq,
            event_type: entry.event_type.clone(),
            bucket_hour: entry.bucket_hour,
            event_count: entry.event_count,
            sealed_at_ms: entry.sealed_at_ms,
            bytes: Some(bytes),
        };
        let announcement = AuditRecord {
            agent_id: self.settings.agent_id.clone(),
            spool_id: self.settings.spool_id,
            at_ms: now,
            body: AuditBody::Announcement(Announcement {
                event_type: out.event_type.clone(),
                bucket_hour: out.bucket_hour,
                batch_seq: out.batch_seq,
                event_count: out.event_count,
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
            topic,
            announce: !entry.announced,
            announcement,
            out,
        };
        let reports = self.reports.clone();
        tokio::spawn(async move {
            job.run(reports).await;
            drop(permit);
        });
    }

    /// Queues again every batch whose ack is overdue ([`retransmit_wait_ms`]).
    async fn retransmit_due(&mut self) {
        let now = self.clock.now_ms();
        let after = self.settings.retransmit_after.as_millis() as i64;
        let due: Vec<u64> = self
            .tracked
            .iter()
            .filter(|(seq, t)| {
                // Back off only while the pipeline looks stalled: no ack at all for two
                // retransmit intervals. A lost ack among flowing ones is resent at once.
                let stalled = now.saturating_sub(self.last_ack_ms) > 2 * after;
                let sends = if stalled { t.sends } else { 1 };
                t.phase == Phase::Sent
                    && now - t.last_sent_ms >= retransmit_wait_ms(after, sends, **seq)
            })
            .map(|(&s, _)| s)
            .collect();
        for seq in due {
            if let Some(t) = self.tracked.get_mut(&seq) {
                t.phase = Phase::Waiting;
                self.waiting.insert(seq);
            }
        }
        self.dispatch().await;
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
        let unannounced = self
            .tracked
            .values()
            .filter(|t| !t.announced)
            .map(|t| t.bucket_hour)
            .min();
        let final_before_hour = [
            Some(Hour::from_unix_ms(now)),
            status.oldest_open_hour,
            unannounced,
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the current hour is always there");
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

/// How long after its `sends`-th send a batch's missing ack makes it due again:
/// `base_ms` after the first send, doubling with each further send up to 8 times
/// `base_ms`, spread by ±20% (a fixed draw per batch seq) so the batches of one outage
/// do not come back as one wave. A broker or consumer that recovers slowly is not met
/// by a retransmit storm. (The sender counts sends only while no ack at all arrived
/// for two intervals: with acks flowing, a missing one was lost and is due after
/// `base_ms` again.)
pub fn retransmit_wait_ms(base_ms: i64, sends: u32, batch_seq: u64) -> i64 {
    let doubled = base_ms.saturating_mul(1 << sends.saturating_sub(1).min(3));
    let draw = batch_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    let spread = 0.8 + 0.4 * draw as f64 / 1024.0;
    (doubled as f64 * spread) as i64
}

/// Produce errors a quick retry cannot cure: the message is too large for the broker
/// or topic, the topic is missing, or the agent may not write to it.
fn is_permanent(err: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        err.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::UnknownTopic
                | C::UnknownTopicOrPartition
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
        )
    )
}

struct SendJob {
    producer: Arc<RwLock<Arc<FutureProducer>>>,
    /// Wait after a permanent error (the retransmit timeout).
    permanent_retry: Duration,
    producer_config: ClientConfig,
    metrics: Arc<Metrics>,
    key: String,
    audit_topic: String,
    topic: String,
    announce: bool,
    announcement: Vec<u8>,
    out: Outgoing,
}

impl SendJob {
    async fn run(self, reports: mpsc::UnboundedSender<TaskReport>) {
        if self.announce {
            self.deliver(&self.audit_topic, &self.announcement).await;
            let _ = reports.send(TaskReport::Announced(self.out.batch_seq));
        }
        let bytes = self.out.bytes.clone().expect("a send carries its bytes");
        self.deliver(&self.topic, &bytes).await;
        let _ = reports.send(TaskReport::Sent(self.out.batch_seq));
    }

    /// Produces until Kafka confirms; recreates the producer after a fatal error.
    async fn deliver(&self, topic: &str, payload: &[u8]) {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let producer = self.producer.read().expect("producer lock").clone();
            let record = FutureRecord::to(topic)
                .key(self.key.as_bytes())
                .payload(payload);
            match producer.send(record, Timeout::Never).await {
                Ok(_) => {
                    self.metrics.kafka_produce_seconds.observe_since(started);
                    return;
                }
                Err((err, _)) if is_permanent(&err) => {
                    // Kept in the spool, never dropped: someone must fix the topic,
                    // its limits or the ACLs. Said loudly, retried as a missing ack is.
                    Metrics::add(&self.metrics.kafka_permanent_errors, 1);
                    tracing::error!(
                        "PERMANENT produce error for batch {} ({} bytes) to {topic}: {err}; \
                         it stays in the spool and is retried every {} s",
                        self.out.batch_seq,
                        payload.len(),
                        self.permanent_retry.as_secs()
                    );
                    tokio::time::sleep(self.permanent_retry).await;
                }
                Err((err, _)) => {
                    Metrics::add(&self.metrics.kafka_errors, 1);
                    if producer.client().fatal_error().is_some() {
                        self.recreate(&producer);
                    } else {
                        tracing::warn!("produce to {topic} failed, retrying: {err}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn recreate(&self, failed: &Arc<FutureProducer>) {
        let mut slot = self.producer.write().expect("producer lock");
        if Arc::ptr_eq(&slot, failed) {
            match self.producer_config.create::<FutureProducer>() {
                Ok(p) => {
                    tracing::warn!("producer hit a fatal error; recreated it");
                    Metrics::add(&self.metrics.kafka_producer_recreated, 1);
                    *slot = Arc::new(p);
                }
                Err(e) => tracing::warn!("recreating the producer failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retransmit_wait_ms;

    #[test]
    fn retransmits_back_off_to_eight_times_and_spread() {
        for seq in 0..1_000u64 {
            let waits: Vec<i64> = (1..=6)
                .map(|n| retransmit_wait_ms(30_000, n, seq))
                .collect();
            assert!((24_000..=36_000).contains(&waits[0]), "{waits:?}");
            assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
            assert_eq!(waits[3], waits[5], "capped at 8x: {waits:?}");
            assert!((192_000..=288_000).contains(&waits[3]), "{waits:?}");
        }
        let first: std::collections::BTreeSet<i64> = (0..100)
            .map(|seq| retransmit_wait_ms(30_000, 1, seq))
            .collect();
        assert!(first.len() > 50, "spread over batches: {}", first.len());
    }
}
