//! A route's two Kafka clients, as layered settings ([`evd_schemas::kafka_client`]):
//! the consumer on the source cluster and the producer on the destination. Each
//! cluster's `options` table (`[edge.options]`, `[central.options]`) applies to every
//! client on that cluster. `evd validate` and `evd bridge` build all four from these
//! specs, so a setting librdkafka refuses is reported before start.

use evd_schemas::kafka_client::{ClientSpec, role_tables};

use crate::config::{ClusterConfig, TuningConfig};
use crate::route::RouteSpec;

/// The route's producer on the destination cluster.
pub fn producer(spec: &RouteSpec) -> ClientSpec<'_> {
    let tuning = &spec.tuning;
    let mut defaults = cluster_defaults(&spec.destination, tuning);
    defaults.extend([
        ("linger.ms", tuning.linger_ms.to_string()),
        ("batch.size", tuning.batch_bytes.to_string()),
        (
            "max.in.flight.requests.per.connection",
            tuning.max_in_flight.to_string(),
        ),
        // Wait for the destination as long as it takes: never drop a record.
        ("message.timeout.ms", "0".into()),
    ]);
    ClientSpec {
        client: if spec.name == "forward" {
            "bridge forward producer"
        } else {
            "bridge reverse producer"
        },
        defaults,
        tables: {
            let side = paths(spec.destination_side);
            role_tables(
                side.options,
                &spec.destination.options,
                side.producer,
                &spec.destination.producer,
            )
        },
        // Records keep their key; with the acks' partitioner an agent finds its acks
        // on the edge in the one partition it reads (`wire::ack_partition`).
        fixed: vec![
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
            ("compression.type", "none".into()),
            (
                "partitioner",
                evd_schemas::wire::ack_partition::PARTITIONER.into(),
            ),
        ],
    }
}

/// The route's consumer on the source cluster: offsets committed once delivered.
pub fn consumer(spec: &RouteSpec) -> ClientSpec<'_> {
    let mut defaults = cluster_defaults(&spec.source, &spec.tuning);
    defaults.push(("auto.offset.reset", "earliest".into()));
    ClientSpec {
        client: if spec.name == "forward" {
            "bridge forward consumer"
        } else {
            "bridge reverse consumer"
        },
        defaults,
        tables: {
            let side = paths(spec.source_side);
            role_tables(
                side.options,
                &spec.source.options,
                side.consumer,
                &spec.source.consumer,
            )
        },
        fixed: vec![
            ("group.id", format!("{}.{}", spec.group_id, spec.name)),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
        ],
    }
}

fn cluster_defaults(cluster: &ClusterConfig, tuning: &TuningConfig) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("bootstrap.servers", cluster.bootstrap_servers.clone()),
        ("log_level", "4".into()),
    ];
    if tuning.socket_send_buffer_bytes > 0 {
        out.push((
            "socket.send.buffer.bytes",
            tuning.socket_send_buffer_bytes.to_string(),
        ));
    }
    if tuning.socket_receive_buffer_bytes > 0 {
        out.push((
            "socket.receive.buffer.bytes",
            tuning.socket_receive_buffer_bytes.to_string(),
        ));
    }
    out
}

/// Where one cluster's tables are in the bridge's config file.
pub struct SidePaths {
    pub options: &'static str,
    pub producer: &'static str,
    pub consumer: &'static str,
}

const EDGE: SidePaths = SidePaths {
    options: "edge.options",
    producer: "edge.producer",
    consumer: "edge.consumer",
};

const CENTRAL: SidePaths = SidePaths {
    options: "central.options",
    producer: "central.producer",
    consumer: "central.consumer",
};

/// The table paths of `side` (`edge` or `central`, as `RouteSpec` names them).
pub fn paths(side: &str) -> &'static SidePaths {
    match side {
        "edge" => &EDGE,
        _ => &CENTRAL,
    }
}
