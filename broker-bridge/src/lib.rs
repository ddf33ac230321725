//! # The broker-bridge: edge cluster → central cluster, and acks back
//!
//! Sites far apart keep a Kafka cluster each, so hosts never wait on a long link; the
//! bridge carries the sealed batches across without decrypting them (it holds no
//! keys) and relays the consumers' end-to-end acks back to the edge.
//!
//! Two [`route::Route`]s run, each on its own thread: **forward** reads the event
//! (and audit) topics on the edge and produces them to the central cluster;
//! **reverse** reads the acks topic on the central cluster and produces it to the
//! edge. A route copies key, value, headers and timestamp byte for byte; batches are
//! already zstd-compressed, so the producer does not compress again.
//!
//! ## Rules (at least once, never a silent skip)
//!
//! 1. A source offset is committed only after the destination acknowledged
//!    (`acks=all`, idempotent producer) that record and every record before it on
//!    its partition ([`tracker::Tracker`]). The producer waits for a destination that
//!    is down as long as it takes (`message.timeout.ms = 0`); a delivery that fails
//!    for good stops the bridge without committing it.
//! 2. Before partitions are revoked (rebalance) or at a clean stop, what was read is
//!    delivered and committed; if the destination does not answer in 30 s, nothing is
//!    committed and the next owner carries those records again.
//! 3. A group without a committed offset starts at the earliest retained offset.
//! 4. Every record's offset is checked against the one before (or, for a partition's
//!    first record, against the committed offset). A gap is counted in
//!    `evd_bridge_skipped_offsets_total` and logged with the number of records skipped; a
//!    step back (topic deleted and recreated) in `evd_bridge_offset_resets_total`. Source
//!    topics must therefore not be compacted or transactional (evd's are neither).
//! 5. Duplicates from a crash or rebalance are expected and harmless: consumers
//!    deduplicate on `(agent_id, batch_seq)`, and acks are idempotent.
//!
//! Several bridge instances with the same `group_id` split the partitions.

pub mod config;
pub mod kafka_clients;
pub mod lag;
pub mod metrics;
pub mod route;
pub mod tracker;

use std::sync::Arc;

pub use config::BridgeConfig;
pub use evd_runtime::Stop as CancellationToken;
pub use metrics::Metrics;
use route::{Route, RouteSpec};

/// Why the bridge stopped: the role error every role shares (`Fatal`: a record
/// could not be delivered for good, or a thread died; nothing undelivered was
/// committed).
pub type BridgeError = evd_runtime::RoleError;

/// The routes a config asks for.
pub fn routes(config: &BridgeConfig) -> Vec<RouteSpec> {
    let forward_topics = if config.forward.topics.is_empty() {
        vec![config.forward.topic_pattern.clone()]
    } else {
        config.forward.topics.clone()
    };
    let mut out = vec![RouteSpec {
        name: "forward",
        group_id: config.group_id.clone(),
        source: config.edge.clone(),
        source_side: "edge",
        destination: config.central.clone(),
        destination_side: "central",
        topics: forward_topics,
        topic_map: config.forward.topic_map.clone(),
        tuning: config.tuning.clone(),
    }];
    if config.reverse.enabled {
        out.push(RouteSpec {
            name: "reverse",
            group_id: config.group_id.clone(),
            source: config.central.clone(),
            source_side: "central",
            destination: config.edge.clone(),
            destination_side: "edge",
            topics: config.reverse.topics.clone(),
            topic_map: config.reverse.topic_map.clone(),
            tuning: config.tuning.clone(),
        });
    }
    out
}

/// What the bridge runs on.
pub struct BridgeParts {
    pub config: BridgeConfig,
    /// Counters the caller may serve (`evd` serves them on `metrics_listen`).
    pub metrics: Arc<Metrics>,
}

/// Runs every route until `stop` is cancelled (each route then delivers what it read
/// and commits), or until one fails (then the others are stopped too and the first
/// error is returned). Blocks: call it from a thread of its own.
pub fn run(parts: BridgeParts, stop: CancellationToken) -> Result<(), BridgeError> {
    let BridgeParts { config, metrics } = parts;
    let routes: Vec<Route> = routes(&config)
        .into_iter()
        .map(|spec| Route::new(spec, metrics.clone()))
        .collect::<Result<_, _>>()?;
    let handles: Vec<_> = routes
        .into_iter()
        .map(|route| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let result = route.run(&stop);
                if result.is_err() {
                    stop.cancel();
                }
                result
            })
        })
        .collect();
    metrics.mark_ready();
    tracing::info!("ready: every route runs");
    let mut first_error = None;
    for h in handles {
        let result = h.join().unwrap_or_else(|_| {
            let what = "a route thread panicked".to_string();
            Err(BridgeError::fatal_msg(what))
        });
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
