//! End-to-end acks: signed (`wire::control_tag`, under the master keyring), one per
//! agent incarnation, published to the acks topic after the flush that wrote their
//! batches is committed.
//!
//! Contract: acks are best effort and never hold up consuming. [`Acker::send`] queues
//! them and returns at once; a task of its own awaits their delivery, counts them and
//! logs failures. An ack that is never delivered costs a retransmit: the agent sends the
//! batch again and the ledger answers it with another ack. Waiting for delivery in the
//! consume loop (as before) stopped the consumer for up to `message.timeout.ms` per ack
//! whenever the acks topic had no leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use evd_schemas::wire::ack::Ack;
use evd_schemas::{MasterKeyring, Origin, SeqRanges};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::metrics::{self, Metrics};

pub(crate) struct Acker {
    producer: FutureProducer,
    keys: MasterKeyring,
    topic: String,
    metrics: Arc<Metrics>,
}

impl Acker {
    pub(crate) fn new(
        producer: FutureProducer,
        keys: MasterKeyring,
        topic: String,
        metrics: Arc<Metrics>,
    ) -> Acker {
        Acker {
            producer,
            keys,
            topic,
            metrics,
        }
    }

    /// Queues one ack per agent incarnation (split into chunks of at most 65,536
    /// ranges) for the batches `object` committed, and returns without waiting.
    pub(crate) fn send(&self, batches: BTreeMap<Origin, SeqRanges>, object: &str) {
        let now = evd_schemas::clock::unix_now_ms();
        let mut deliveries = Vec::new();
        for (Origin { agent_id, spool_id }, seqs) in batches {
            let ranges: Vec<(u64, u64)> = seqs.iter().collect();
            for chunk in ranges.chunks(evd_schemas::wire::MAX_RANGES) {
                let ack = Ack {
                    agent_id: agent_id.clone(),
                    spool_id,
                    committed_at_ms: now,
                    committed_object: object.to_string(),
                    batch_seqs: SeqRanges::from_ranges(chunk.iter().copied()),
                };
                let Ok(bytes) = ack.encode(&self.keys) else {
                    continue;
                };
                let record = FutureRecord::to(&self.topic)
                    .key(agent_id.as_bytes())
                    .payload(&bytes);
                match self.producer.send_result(record) {
                    Ok(delivery) => deliveries.push((agent_id.clone(), delivery)),
                    // The producer's queue is full (the acks topic has been unreachable
                    // for long): the agent's retransmit will bring this ack back.
                    Err((e, _)) => tracing::warn!("ack to {agent_id} not queued: {e}"),
                }
            }
        }
        if deliveries.is_empty() {
            return;
        }
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for (agent_id, delivery) in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => metrics::add(&metrics.acks_sent, 1),
                    Ok(Err((e, _))) => tracing::warn!("ack to {agent_id} failed: {e}"),
                    // The producer is gone (shutdown).
                    Err(_) => {}
                }
            }
        });
    }

    /// At shutdown: gives the queued acks up to `timeout` to be delivered.
    pub(crate) async fn finish(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}
