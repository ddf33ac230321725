//! Consumes the acks topic and hands this agent's end-to-end acks to the writer.
//!
//! Acks are idempotent and a missed one only delays freeing (the batch is retransmitted,
//! the consumer dedups it and acks again), so offsets are auto-committed. The agent
//! reads only the partition its id maps to (`wire::ack_partition`, the partitioner
//! every acks producer is fixed to), so what it reads grows with the agents sharing
//! that partition, not with every agent. The partition is assigned directly rather
//! than through a group rebalance, so a restarted agent reads acks at once instead of
//! waiting out its dead predecessor's session. The partition count is looked up again
//! every 30 s: after the topic grew, the new home partition is read as well.

use std::sync::Arc;
use std::sync::mpsc::Sender as StdSender;

use evd_schemas::wire::ack::Ack;
use evd_schemas::{AgentKeyring, Origin, SpoolId};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use evd_runtime::kafka::partition_count;

use crate::metrics::Metrics;
use crate::writer::WriterMsg;

/// Runs until the writer is gone. Acks for other agents are skipped; an ack keyed to
/// this agent whose tag does not verify under `keys` (forged, or an unauthenticated
/// old version) is counted and frees nothing; acks for another incarnation of this
/// agent id (`origin.spool_id`) are counted and free nothing.
pub async fn run(
    config: ClientConfig,
    topic: String,
    origin: Origin,
    keys: AgentKeyring,
    to_writer: StdSender<WriterMsg>,
    metrics: Arc<Metrics>,
) -> Result<(), rdkafka::error::KafkaError> {
    let Origin { agent_id, spool_id } = origin;
    let consumer: StreamConsumer = config.create()?;
    let mut home = HomePartitions::default();
    while !home.refresh(&consumer, &topic, &agent_id, &metrics) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut refresh_at = tokio::time::Instant::now() + HOME_REFRESH;
    let drop_percent = crate::test_faults::switches().drop_acks_percent;
    let mut seen = 0u64;
    let mut errors_log = evd_schemas::log_limit::LogLimit::default();
    let mut warned = std::collections::BTreeSet::new();
    loop {
        // Checked before each read, so a steady flow of acks cannot starve it.
        if tokio::time::Instant::now() >= refresh_at {
            home.refresh(&consumer, &topic, &agent_id, &metrics);
            refresh_at += HOME_REFRESH;
        }
        let msg = match tokio::time::timeout_at(refresh_at, consumer.recv()).await {
            Err(_) => continue,
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                if let Some(held) = errors_log.allow(std::time::Instant::now()) {
                    tracing::warn!(held_back = held, "acks consumer: {e} (retrying)");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        Metrics::add(&metrics.acks_records_read, 1);
        if msg.key() != Some(agent_id.as_bytes()) {
            continue;
        }
        let Some(payload) = msg.payload() else {
            continue;
        };
        seen += 1;
        // Test-only fault: lose this ack as if the network had (spread evenly).
        if drop_percent > 0 && (seen.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) % 100 < drop_percent
        {
            continue;
        }
        match Ack::decode(payload, &keys) {
            Ok(ack) if ack.agent_id == agent_id && ack.spool_id == spool_id => {
                if to_writer.send(WriterMsg::Acked(ack.batch_seqs)).is_err() {
                    return Ok(());
                }
            }
            Ok(ack) if ack.agent_id == agent_id => {
                Metrics::add(&metrics.acks_other_spool, 1);
                warn_other_spool(&mut warned, ack.spool_id, spool_id);
            }
            Ok(_) => {}
            Err(e) => {
                Metrics::add(&metrics.acks_unauthenticated, 1);
                tracing::warn!(
                    "ack refused at {}:{} (it frees nothing): {e}",
                    msg.partition(),
                    msg.offset()
                );
            }
        }
    }
}

const HOME_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// The partitions of the acks topic this agent reads: where its id maps to under the
/// current partition count, plus where it mapped before the topic grew (acks sent
/// just before the change are still there). Pure; `refresh` is its shell.
#[derive(Debug, Default)]
struct HomePartitions {
    count: i32,
    assigned: std::collections::BTreeSet<i32>,
    /// Says (once per 30 s) why the topic's partitions are not known.
    missing_log: evd_schemas::log_limit::LogLimit,
}

impl HomePartitions {
    /// The topic has `count` partitions now: the home partition to add, if it is new.
    fn on_count(&mut self, count: i32, agent_id: &str) -> Option<i32> {
        if count <= 0 || count == self.count {
            return None;
        }
        let home = evd_schemas::wire::ack_partition::partition_for(agent_id, count);
        if self.assigned.contains(&home) {
            self.count = count;
            return None;
        }
        Some(home)
    }

    /// `partition` is assigned now, under `count` partitions.
    fn assigned(&mut self, partition: i32, count: i32) {
        self.count = count;
        self.assigned.insert(partition);
    }

    /// Looks up the partition count and assigns the home partition if it is new;
    /// false when the topic's metadata is not available yet.
    fn refresh(
        &mut self,
        consumer: &StreamConsumer,
        topic: &str,
        agent_id: &str,
        metrics: &Metrics,
    ) -> bool {
        let count = match partition_count(consumer, topic) {
            Ok(count) => count,
            Err(why) => {
                Metrics::set(&metrics.acks_topic_missing, 1);
                if let Some(held) = self.missing_log.allow(std::time::Instant::now()) {
                    tracing::warn!(
                        held_back = held,
                        "{why}: no acks can arrive, so the spool cannot free (retrying)"
                    );
                }
                return false;
            }
        };
        self.missing_log.reset();
        Metrics::set(&metrics.acks_topic_missing, 0);
        let Some(home) = self.on_count(count, agent_id) else {
            return true;
        };
        let mut list = TopicPartitionList::new();
        let _ = list.add_partition_offset(topic, home, Offset::Stored);
        let result = if self.assigned.is_empty() {
            consumer.assign(&list)
        } else {
            consumer.incremental_assign(&list)
        };
        match result {
            Ok(()) => {
                self.assigned(home, count);
                true
            }
            Err(e) => {
                tracing::warn!("assigning {topic}/{home}: {e} (retrying)");
                false
            }
        }
    }
}

/// Logs the first ack seen for each other incarnation of this agent id.
fn warn_other_spool(
    warned: &mut std::collections::BTreeSet<SpoolId>,
    other: SpoolId,
    own: SpoolId,
) {
    if warned.insert(other) {
        tracing::warn!(
            "acks for spool {other} of this agent id arrive, this agent's spool is {own}: \
             they free nothing here (an earlier, wiped spool, or a second host with this agent id)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::HomePartitions;
    use evd_schemas::wire::ack_partition::partition_for;

    /// The agent reads one partition, and when the topic grows it adds its new home
    /// and keeps the old one (acks sent just before the change are there).
    #[test]
    fn the_home_partition_follows_the_topic_as_it_grows() {
        let id = (0..)
            .map(|i| format!("grow-{i}"))
            .find(|id| partition_for(id, 4) != 0 && partition_for(id, 12) != partition_for(id, 4))
            .unwrap();
        let mut home = HomePartitions::default();
        assert_eq!(home.on_count(1, &id), Some(0));
        home.assigned(0, 1);
        assert_eq!(home.on_count(1, &id), None, "nothing changed");
        let new = partition_for(&id, 4);
        assert_eq!(
            home.on_count(4, &id),
            Some(new),
            "grown to 4: read the new home"
        );
        assert_eq!(
            home.on_count(4, &id),
            Some(new),
            "until its assignment succeeded"
        );
        home.assigned(new, 4);
        assert_eq!(home.on_count(4, &id), None);
        assert_eq!(home.on_count(12, &id), Some(partition_for(&id, 12)));
        assert_eq!(home.on_count(0, &id), None, "no metadata changes nothing");
        assert_eq!(
            home.assigned.iter().copied().collect::<Vec<_>>(),
            vec![0, new]
        );
    }
}
