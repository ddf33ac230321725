//! Kafka plumbing every role shares: a client's native config from its layered
//! settings (`evd_schemas::kafka_client`: defaults < the role's `options` < the
//! client's table < the keys evd fixes) and topic metadata.

use std::time::Duration;

use evd_schemas::kafka_client::{ClientSpec, SettingError};
use evd_schemas::log_limit::LogLimit;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A client's librdkafka configuration from its layered settings; a setting that
/// contradicts a key evd fixes is refused.
pub fn client_config(spec: &ClientSpec<'_>) -> Result<ClientConfig, SettingError> {
    Ok(spec.settings()?.into_iter().collect())
}

/// The topic's partition count from fresh metadata, or why it is not known: the
/// cluster did not answer, or the topic does not exist (with auto-creation off, a
/// topic nobody provisioned; `evd topics create` makes them).
pub fn partition_count(consumer: &StreamConsumer, topic: &str) -> Result<i32, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| format!("metadata for topic {topic}: {e}"))?;
    let Some(found) = metadata.topics().first() else {
        return Err(format!("no metadata for topic {topic}"));
    };
    if let Some(err) = found.error() {
        let code = rdkafka::types::RDKafkaErrorCode::from(err);
        return Err(format!(
            "topic {topic}: {code} (is it created? `evd topics check --config …`)"
        ));
    }
    match found.partitions().len() {
        0 => Err(format!(
            "topic {topic} does not exist (is it created? `evd topics check --config …`)"
        )),
        n => Ok(n as i32),
    }
}

/// Assigns every partition of `topic` at `start`, retrying until the topic's metadata
/// is available. (The auditor reads the audit topic this way.)
pub async fn assign_all_partitions(consumer: &StreamConsumer, topic: &str, start: Offset) {
    let mut missing_log = LogLimit::default();
    loop {
        let count = partition_count(consumer, topic);
        if let Err(why) = &count
            && let Some(held) = missing_log.allow(std::time::Instant::now())
        {
            tracing::warn!(held_back = held, "{why} (retrying)");
        }
        if let Ok(n) = count {
            let mut list = TopicPartitionList::new();
            for p in 0..n {
                let _ = list.add_partition_offset(topic, p, start);
            }
            match consumer.assign(&list) {
                Ok(()) => return,
                Err(e) => tracing::warn!("assigning {topic}: {e} (retrying)"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
