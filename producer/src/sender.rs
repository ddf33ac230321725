//! The sender: gets sealed batches into Kafka and keeps sending them until acked.
//!
//! Per batch: announce it on the audit topic, wait for that delivery, then produce the
//! batch to its event type's topic (idempotent producer, `acks=all`, key = agent id),
//! retrying every error. Announcing first means a consumer can only ack a batch the
//! auditor has been told about. A batch not acked `retransmit_after` after its last send
//! is sent again with the exact bytes from the spool. Heartbeats carry
//! `final_before_hour`: no batch of an earlier hour remains unannounced.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender as StdSender;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, Registry};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::writer::{Outgoing, SenderMsg, WriterMsg};

/// Batches being sent at once (each waits for its own delivery report).
const SENDS_IN_FLIGHT: usize = 256;

pub struct SenderSettings {
    pub agent_id: String,
    /// The spool's incarnation, carried in every audit record.
    pub spool_id: evd_schemas::SpoolId,
    pub producer_config: ClientConfig,
    pub audit_topic: String,
    pub retransmit_after: Duration,
    pub heartbeat_interval: Duration,
    pub started_at_ms: i64,
}

/// Builds the reliable producer config: evd's fixed settings over the user's extras.
pub fn producer_config(bootstrap: &str, extra: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .set("log_level", "4");
    for (k, v) in extra {
        cfg.set(k, v);
    }
    cfg.set("enable.idempotence", "true").set("acks", "all");
    cfg
}

#[derive(Debug)]
struct Tracked {
    event_type: String,
    bucket_hour: Hour,
    event_count: u32,
    sealed_at_ms: i64,
    announced: bool,
    /// Set while a send task runs; `None` = waiting in Kafka for the consumer's ack.
    in_flight: bool,
    last_sent_ms: i64,
    sends: u32,
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
        Ok(Sender {
            settings,
            registry,
            to_writer,
            clock,
            metrics,
            producer: Arc::new(RwLock::new(producer)),
            tracked: BTreeMap::new(),
        })
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<SenderMsg>) {
        let (report_tx, mut reports) = mpsc::unbounded_channel::<TaskReport>();
        let permits = Arc::new(Semaphore::new(SENDS_IN_FLIGHT));
        let mut retransmit_tick = tokio::time::interval(Duration::from_millis(500));
        let mut heartbeat_tick = tokio::time::interval(self.settings.heartbeat_interval);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg, &report_tx, &permits),
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
                            t.in_flight = false;
                            t.last_sent_ms = self.clock.now_ms();
                        }
                    }
                },
                _ = retransmit_tick.tick() => self.retransmit_due(&report_tx, &permits).await,
                _ = heartbeat_tick.tick() => self.heartbeat(&mut rx, &report_tx, &permits).await,
            }
        }
        // Let queued messages go out before the process exits.
        let producer = self.current_producer();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    }

    /// A message from the writer: a batch to send, or acked batches to stop tracking.
    fn handle(
        &mut self,
        msg: SenderMsg,
        reports: &mpsc::UnboundedSender<TaskReport>,
        permits: &Arc<Semaphore>,
    ) {
        match msg {
            SenderMsg::Send(out) => self.start_send(out, reports, permits),
            SenderMsg::Acked(seqs) => {
                for (a, b) in seqs.iter() {
                    let done: Vec<u64> = self.tracked.range(a..=b).map(|(&s, _)| s).collect();
                    for s in done {
                        self.tracked.remove(&s);
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

    fn start_send(
        &mut self,
        out: Outgoing,
        reports: &mpsc::UnboundedSender<TaskReport>,
        permits: &Arc<Semaphore>,
    ) {
        let now = self.clock.now_ms();
        let topic = self.topic_for(&out.event_type);
        let entry = self
            .tracked
            .entry(out.batch_seq)
            .or_insert_with(|| Tracked {
                event_type: out.event_type.clone(),
                bucket_hour: out.bucket_hour,
                event_count: out.event_count,
                sealed_at_ms: out.sealed_at_ms,
                announced: false,
                in_flight: false,
                last_sent_ms: now,
                sends: 0,
            });
        if entry.in_flight {
            return;
        }
        entry.in_flight = true;
        entry.sends += 1;
        if entry.sends > 1 || out.sealed_at_ms < self.settings.started_at_ms {
            Metrics::add(&self.metrics.batches_retransmitted, 1);
        }
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
        .encode()
        .expect("agent ids and type names were checked");
        let job = SendJob {
            producer: self.producer.clone(),
            producer_config: self.settings.producer_config.clone(),
            metrics: self.metrics.clone(),
            key: self.settings.agent_id.clone(),
            audit_topic: self.settings.audit_topic.clone(),
            topic,
            announce: !entry.announced,
            announcement,
            out,
        };
        let reports = reports.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            job.run(reports).await;
        });
    }

    async fn retransmit_due(
        &mut self,
        reports: &mpsc::UnboundedSender<TaskReport>,
        permits: &Arc<Semaphore>,
    ) {
        let now = self.clock.now_ms();
        let after = self.settings.retransmit_after.as_millis() as i64;
        let due: Vec<u64> = self
            .tracked
            .iter()
            .filter(|(_, t)| !t.in_flight && now - t.last_sent_ms >= after)
            .map(|(&s, _)| s)
            .take(SENDS_IN_FLIGHT)
            .collect();
        for seq in due {
            let (tx, rx) = oneshot::channel();
            if self
                .to_writer
                .send(WriterMsg::ReadSealed {
                    batch_seq: seq,
                    reply: tx,
                })
                .is_err()
            {
                return;
            }
            match rx.await {
                Ok(Some(bytes)) => {
                    let t = &self.tracked[&seq];
                    let out = Outgoing {
                        batch_seq: seq,
                        event_type: t.event_type.clone(),
                        bucket_hour: t.bucket_hour,
                        event_count: t.event_count,
                        sealed_at_ms: t.sealed_at_ms,
                        bytes: Arc::new(bytes),
                    };
                    self.start_send(out, reports, permits);
                }
                // Acked meanwhile: the ack is on its way to us.
                Ok(None) => {
                    self.tracked.remove(&seq);
                }
                Err(_) => return,
            }
        }
    }

    async fn heartbeat(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<SenderMsg>,
        reports: &mpsc::UnboundedSender<TaskReport>,
        permits: &Arc<Semaphore>,
    ) {
        let (tx, status_rx) = oneshot::channel();
        if self.to_writer.send(WriterMsg::Status(tx)).is_err() {
            return;
        }
        let Ok(status) = status_rx.await else { return };
        // The writer hands over sealed batches before it answers, so take them now.
        while let Ok(msg) = rx.try_recv() {
            self.handle(msg, reports, permits);
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
        .encode()
        .expect("agent id was checked");
        let producer = self.current_producer();
        let record = FutureRecord::to(&self.settings.audit_topic)
            .key(self.settings.agent_id.as_bytes())
            .payload(&record);
        // Heartbeats are periodic: a lost one is replaced by the next.
        let _ = producer
            .send(record, Timeout::After(Duration::from_secs(5)))
            .await;
    }
}

struct SendJob {
    producer: Arc<RwLock<Arc<FutureProducer>>>,
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
        self.deliver(&self.topic, &self.out.bytes).await;
        let _ = reports.send(TaskReport::Sent(self.out.batch_seq));
    }

    /// Produces until Kafka confirms; recreates the producer after a fatal error.
    async fn deliver(&self, topic: &str, payload: &[u8]) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let producer = self.producer.read().expect("producer lock").clone();
            let record = FutureRecord::to(topic)
                .key(self.key.as_bytes())
                .payload(payload);
            match producer.send(record, Timeout::Never).await {
                Ok(_) => return,
                Err((err, _)) => {
                    Metrics::add(&self.metrics.kafka_errors, 1);
                    if producer.client().fatal_error().is_some() {
                        self.recreate(&producer);
                    } else {
                        eprintln!("evd agent: produce to {topic} failed, retrying: {err}");
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
                    eprintln!("evd agent: producer hit a fatal error; recreated it");
                    Metrics::add(&self.metrics.kafka_producer_recreated, 1);
                    *slot = Arc::new(p);
                }
                Err(e) => eprintln!("evd agent: recreating the producer failed: {e}"),
            }
        }
    }
}
