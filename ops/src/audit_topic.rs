//! The auditor's audit-topic reader: every agent's heartbeats and batch announcements,
//! verified (`wire::control_tag`) and fed into `audit::AuditState`. Read from the
//! beginning at each start; hours close only once the reader has caught up with where
//! the topic stood then (`audit::CatchUp`). Partitions added later are picked up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use evd_schemas::MasterKeyring;
use evd_schemas::wire::audit::AuditRecord;
use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

use crate::audit::CatchUp;
use crate::auditor::{OpsError, Shared};
use crate::config::OpsConfig;

/// Reads the audit topic from the beginning into the state, forever.
pub async fn read_audit_topic(
    config: &OpsConfig,
    shared: Arc<Shared>,
    keys: MasterKeyring,
) -> Result<(), OpsError> {
    let cfg = evd_runtime::kafka::client_config(&config.kafka.audit_consumer(&config.auditor_id))
        .map_err(|e| OpsError::config("kafka settings", e))?;
    let consumer: StreamConsumer = cfg
        .create()
        .map_err(|e| OpsError::config("kafka consumer", e))?;
    let topic = config.kafka.audit_topic.as_str();
    evd_runtime::kafka::assign_all_partitions(&consumer, topic, Offset::Beginning).await;
    let mut assigned = assigned_partitions(&consumer);
    let mut catch_up = CatchUp::new(watermarks(&consumer, topic, assigned));
    if catch_up.caught_up() {
        shared.mark_audit_caught_up();
    }
    let mut refresh_at = tokio::time::Instant::now() + PARTITION_REFRESH;
    let mut errors_log = evd_schemas::log_limit::LogLimit::default();
    loop {
        if tokio::time::Instant::now() >= refresh_at {
            refresh_at += PARTITION_REFRESH;
            assigned = assign_new_partitions(&consumer, topic, assigned);
        }
        let msg = match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            // Idle: the consumer's positions can pass offsets no message carries
            // (transaction markers, compacted records).
            Err(_) => {
                if !catch_up.caught_up() {
                    for (partition, next) in positions(&consumer) {
                        if catch_up.on_position(partition, next) {
                            log_caught_up(&shared);
                        }
                    }
                }
                continue;
            }
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                if let Some(held) = errors_log.allow(std::time::Instant::now()) {
                    tracing::warn!(held_back = held, "audit topic: {e} (retrying)");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Err(e) = take_audit_record(&shared, &keys, msg.payload().unwrap_or_default()) {
            tracing::warn!(
                "audit record refused at {}:{} (it changes nothing): {e}",
                msg.partition(),
                msg.offset()
            );
        }
        if catch_up.on_position(msg.partition(), msg.offset() + 1) {
            log_caught_up(&shared);
        }
    }
}

/// How often the audit topic's partition count is looked up again: partitions added
/// later are read from their beginning.
const PARTITION_REFRESH: Duration = Duration::from_secs(30);

fn log_caught_up(shared: &Shared) {
    shared.mark_audit_caught_up();
    tracing::info!("audit topic read up to where it stood at start; hours may close");
}

fn assigned_partitions(consumer: &StreamConsumer) -> i32 {
    consumer.assignment().map_or(0, |a| a.count() as i32)
}

/// `(partition, low, high)` for partitions `0..count`, retried until the broker answers.
fn watermarks(consumer: &StreamConsumer, topic: &str, count: i32) -> Vec<(i32, i64, i64)> {
    (0..count)
        .map(|p| {
            loop {
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                    Ok((low, high)) => break (p, low, high),
                    Err(e) => {
                        tracing::warn!("watermarks of {topic}/{p}: {e} (retrying)");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        })
        .collect()
}

fn positions(consumer: &StreamConsumer) -> Vec<(i32, i64)> {
    let Ok(list) = consumer.position() else {
        return Vec::new();
    };
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some((e.partition(), n)),
            _ => None,
        })
        .collect()
}

/// Adds partitions created since the last look, from their beginning; returns the
/// partition count now assigned.
fn assign_new_partitions(consumer: &StreamConsumer, topic: &str, assigned: i32) -> i32 {
    let now = evd_runtime::kafka::partition_count(consumer, topic).unwrap_or(assigned);
    if now <= assigned {
        return assigned;
    }
    let mut list = rdkafka::TopicPartitionList::new();
    for p in assigned..now {
        let _ = list.add_partition_offset(topic, p, Offset::Beginning);
    }
    match consumer.incremental_assign(&list) {
        Ok(()) => {
            tracing::info!(
                "{topic} grew from {assigned} to {now} partitions; reading the new ones"
            );
            now
        }
        Err(e) => {
            tracing::warn!("assigning new partitions of {topic}: {e} (retrying)");
            assigned
        }
    }
}

/// Applies one audit-topic payload to the state if it decodes and its tag verifies
/// under `keys`. A refused record changes nothing and is counted: as
/// `audit_unauthenticated` when its tag or key id does not verify (forged, or signed
/// by another agent), as `audit_undecodable` otherwise (malformed, unauthenticated
/// old version).
pub fn take_audit_record(
    shared: &Shared,
    keys: &MasterKeyring,
    payload: &[u8],
) -> Result<(), evd_schemas::Error> {
    match AuditRecord::decode(payload, keys) {
        Ok(record) => {
            shared.audit_records.fetch_add(1, Ordering::Relaxed);
            shared.state().on_audit(&record);
            Ok(())
        }
        Err(e) => {
            let counter = match &e {
                evd_schemas::Error::UnknownKey { .. }
                | evd_schemas::Error::Rejected {
                    reason: evd_schemas::Reason::BadTag,
                    ..
                } => &shared.audit_unauthenticated,
                _ => &shared.audit_undecodable,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}
