//! The agent's two Kafka clients, as layered settings ([`evd_schemas::kafka_client`]):
//! the batch producer and the acks consumer. `evd validate` and `evd agent` build both
//! from these specs, so a setting librdkafka refuses is reported before start.

use evd_schemas::kafka_client::{ClientSpec, role_tables};

use crate::config::KafkaConfig;

/// The producer of batches, heartbeats and announcements: idempotent, `acks=all`.
pub fn producer(kafka: &KafkaConfig) -> ClientSpec<'_> {
    ClientSpec {
        client: "agent producer",
        defaults: vec![
            ("bootstrap.servers", kafka.bootstrap_servers.clone()),
            ("linger.ms", "5".into()),
            ("message.timeout.ms", "300000".into()),
            ("log_level", "4".into()),
        ],
        tables: role_tables(
            "kafka.options",
            &kafka.options,
            "kafka.producer",
            &kafka.producer,
        ),
        fixed: vec![
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
        ],
    }
}

/// The acks consumer: reads this agent's home partition of the acks topic.
pub fn acks_consumer<'a>(kafka: &'a KafkaConfig, agent_id: &str) -> ClientSpec<'a> {
    ClientSpec {
        client: "agent acks consumer",
        defaults: vec![
            ("bootstrap.servers", kafka.bootstrap_servers.clone()),
            ("auto.offset.reset", "earliest".into()),
            ("enable.auto.commit", "true".into()),
            ("log_level", "4".into()),
        ],
        tables: role_tables(
            "kafka.options",
            &kafka.options,
            "kafka.consumer",
            &kafka.consumer,
        ),
        fixed: vec![("group.id", format!("evd-agent-{agent_id}"))],
    }
}
