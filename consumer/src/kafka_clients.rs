//! The consumer's two Kafka clients, as layered settings ([`evd_schemas::kafka_client`]):
//! the batch consumer and the acks producer. `evd validate` and `evd consumer` build
//! both from these specs, so a setting librdkafka refuses is reported before start.

use evd_schemas::kafka_client::{ClientSpec, role_tables};

use crate::config::ConsumerKafka;

/// The batch consumer: offsets are committed by hand, after the output is durable.
pub fn batch_consumer(kafka: &ConsumerKafka) -> ClientSpec<'_> {
    ClientSpec {
        client: "consumer",
        defaults: vec![
            ("bootstrap.servers", kafka.bootstrap_servers.clone()),
            ("group.id", kafka.group_id.clone()),
            ("auto.offset.reset", "earliest".into()),
            ("log_level", "4".into()),
        ],
        tables: role_tables(
            "kafka.options",
            &kafka.options,
            "kafka.consumer",
            &kafka.consumer,
        ),
        fixed: vec![
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
        ],
    }
}

/// The acks producer: idempotent, `acks=all`, partitioned like the agents read.
pub fn acks_producer(kafka: &ConsumerKafka) -> ClientSpec<'_> {
    ClientSpec {
        client: "consumer acks producer",
        defaults: vec![
            ("bootstrap.servers", kafka.bootstrap_servers.clone()),
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
            // Each agent reads only the partition its id maps to (`wire::ack_partition`).
            (
                "partitioner",
                evd_schemas::wire::ack_partition::PARTITIONER.into(),
            ),
        ],
    }
}
