//! The consumer's Kafka group membership: rebalance notices, the group half of the
//! zombie fence, offset commits and rewinds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::commit::{Fence, Output};
use crate::flush::Partition;
use crate::ledger::{Ledger, Manifest};
use crate::metrics::Metrics;

/// The consumer as a group member.
pub(crate) type GroupConsumer = StreamConsumer<RebalanceFlag>;

/// Notes that the assignment changed, so buffered data of revoked partitions is
/// abandoned (its offsets were never committed: the new owner reads it again).
/// The first assignment also makes the consumer ready (`Metrics::ready`).
pub(crate) struct RebalanceFlag(pub Arc<AtomicBool>, pub Arc<Metrics>);

impl ClientContext for RebalanceFlag {}

impl ConsumerContext for RebalanceFlag {
    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.0.store(true, Ordering::SeqCst);
        }
        // The whole assignment after the change (a cooperative revoke takes a part).
        let owned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        crate::metrics::set(&self.1.assigned_partitions, owned as u64);
        if let Rebalance::Assign(partitions) = rebalance {
            if self.1.ready.swap(1, Ordering::Relaxed) == 0 {
                tracing::info!("ready: joined the group");
            }
            tracing::info!("assigned {} partitions", partitions.count());
        }
    }
}

/// The zombie fence (`crate::fence`): this member still owns the partitions, and no
/// manifest committed since the ledger was built holds the flush's batches.
pub(crate) struct GroupFence<'a> {
    pub consumer: &'a Arc<GroupConsumer>,
    pub first_offsets: &'a BTreeMap<Partition, i64>,
    pub rebalanced: &'a AtomicBool,
    pub output: &'a Output,
    pub ledger: &'a mut Ledger,
}

impl Fence for GroupFence<'_> {
    fn allow<'b>(&'b mut self, manifest: &'b Manifest) -> BoxFuture<'b, Result<(), String>> {
        Box::pin(async move {
            if self.rebalanced.load(Ordering::SeqCst) {
                return Err("the group rebalanced since these batches were read".into());
            }
            // A non-advancing offset commit of where this flush began asks the group
            // coordinator whether this member still owns the partitions; a stale
            // generation is refused.
            commit_offsets(self.consumer, self.first_offsets)
                .await
                .map_err(|e| format!("the group coordinator did not confirm this member ({e})"))?;
            self.output.committed_elsewhere(manifest, self.ledger).await
        })
    }
}

/// librdkafka's synchronous commit may wait indefinitely (e.g. for a coordinator):
/// this one gives up after this long. Giving up is always safe: a fence that is not
/// confirmed abandons the flush, and an offset not committed is read again.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Commits `offsets` (the next offset to read, per partition) synchronously, giving up
/// after [`COMMIT_TIMEOUT`].
pub(crate) async fn commit_offsets(
    consumer: &Arc<GroupConsumer>,
    offsets: &BTreeMap<Partition, i64>,
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    let c = consumer.clone();
    let commit = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync));
    match tokio::time::timeout(COMMIT_TIMEOUT, commit).await {
        Ok(Ok(result)) => result.map_err(|e| e.to_string()),
        Ok(Err(panicked)) => Err(panicked.to_string()),
        Err(_) => Err(format!("no answer within {} s", COMMIT_TIMEOUT.as_secs())),
    }
}

/// Rewinds the partitions still assigned to where an abandoned flush began, so
/// nothing it held is skipped. Partitions no longer assigned are their new owner's.
/// A seek back to a flush's first offsets that failed.
#[derive(Debug, thiserror::Error)]
#[error("rewinding {topic}/{partition} to {first}")]
pub(crate) struct RewindError {
    topic: String,
    partition: i32,
    first: i64,
    source: rdkafka::error::KafkaError,
}

pub(crate) fn rewind(
    consumer: &GroupConsumer,
    first_offsets: &BTreeMap<Partition, i64>,
) -> Result<(), RewindError> {
    let assigned = consumer.assignment().unwrap_or_default();
    for ((topic, partition), first) in first_offsets {
        if assigned.find_partition(topic, *partition).is_none() {
            continue;
        }
        consumer
            .seek(
                topic,
                *partition,
                Offset::Offset(*first),
                Duration::from_secs(10),
            )
            .map_err(|source| RewindError {
                topic: topic.clone(),
                partition: *partition,
                first: *first,
                source,
            })?;
    }
    Ok(())
}
