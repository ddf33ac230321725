//! One batch's send task: announce it (once), then produce it, retrying until Kafka
//! confirms.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// What a send task tells the sender loop.
pub(super) enum TaskReport {
    Announced(u64),
    Sent(u64),
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

pub(super) struct SendJob {
    pub producer: Arc<RwLock<Arc<FutureProducer>>>,
    /// Wait after a permanent error (the retransmit timeout).
    pub permanent_retry: Duration,
    pub producer_config: ClientConfig,
    pub metrics: Arc<Metrics>,
    pub key: String,
    pub audit_topic: String,
    pub topic: String,
    pub announce: bool,
    pub announcement: Vec<u8>,
    pub batch_seq: u64,
    pub bytes: Arc<Vec<u8>>,
}

impl SendJob {
    pub async fn run(self, reports: mpsc::UnboundedSender<TaskReport>) {
        if self.announce {
            self.deliver(&self.audit_topic, &self.announcement).await;
            let _ = reports.send(TaskReport::Announced(self.batch_seq));
        }
        self.deliver(&self.topic, &self.bytes).await;
        let _ = reports.send(TaskReport::Sent(self.batch_seq));
    }

    /// Produces until Kafka confirms; recreates the producer after a fatal error.
    async fn deliver(&self, topic: &str, payload: &[u8]) {
        let started = std::time::Instant::now();
        let mut backoff =
            evd_runtime::backoff::delays(Duration::from_millis(50), Duration::from_secs(5));
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
                        self.batch_seq,
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
                    let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                    tokio::time::sleep(wait).await;
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
