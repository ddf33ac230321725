//! The bridge in-process between two MockClusters: records cross byte for byte (key,
//! value, headers, timestamp, topic mapping), acks come back, and a committed offset
//! the source no longer has is reported, not passed over in silence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evd_bridge::{BridgeConfig, BridgeParts, CancellationToken, Metrics};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tests::MockBroker;
use tests::kafka::client_config;

const EVENTS: &str = "evd.events.PageView";
const MAPPED: &str = "central.events.PageView";
const T0_MS: i64 = 1_795_000_000_000;

fn config(edge: &str, central: &str, group: &str) -> BridgeConfig {
    BridgeConfig::from_toml(
        "bridge.toml",
        &format!(
            r#"group_id = "{group}"
[edge]
bootstrap_servers = "{edge}"
[edge.consumer]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[central]
bootstrap_servers = "{central}"
[forward]
topics = ["{EVENTS}"]
topic_map = {{ "{EVENTS}" = "{MAPPED}" }}
[tuning]
commit_interval_ms = 200
"#
        ),
    )
    .unwrap()
}

fn produce(bootstrap: &str, topic: &str, n: usize) {
    let producer: BaseProducer = client_config(bootstrap).create().unwrap();
    for i in 0..n {
        let key = format!("agent-{}", i % 3);
        let value = format!("sealed-batch-{i}").into_bytes();
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_le_bytes()[..]),
        });
        let record = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers)
            .timestamp(T0_MS + i as i64);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// (key, value, header n, timestamp) of every record on `topic`, until `n` arrived.
fn read(bootstrap: &str, topic: &str, n: usize) -> Vec<(String, String, usize, i64)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("reader-{}", tests::free_port()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let header = m.headers().map(|h| {
                let v = h.get(0).value.unwrap();
                usize::from_le_bytes(v.try_into().unwrap())
            });
            out.push((
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
                header.unwrap_or(usize::MAX),
                m.timestamp().to_millis().unwrap(),
            ));
        }
    }
    out
}

fn start(config: BridgeConfig) -> (Arc<Metrics>, CancellationToken, std::thread::JoinHandle<()>) {
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let (m, s) = (metrics.clone(), stop.clone());
    let parts = BridgeParts { config, metrics: m };
    let handle = std::thread::spawn(move || evd_bridge::run(parts, s).unwrap());
    (metrics, stop, handle)
}

#[test]
fn records_cross_byte_for_byte_and_acks_come_back() {
    let edge = MockBroker::start(1).unwrap();
    let central = MockBroker::start(1).unwrap();
    edge.create_topic(EVENTS, 3).unwrap();
    edge.create_topic("evd.acks", 1).unwrap();
    central.create_topic(MAPPED, 3).unwrap();
    central.create_topic("evd.acks", 1).unwrap();
    produce(edge.bootstrap(), EVENTS, 1_000);
    produce(central.bootstrap(), "evd.acks", 10);

    let (metrics, stop, handle) = start(config(edge.bootstrap(), central.bootstrap(), "g1"));
    let mut got = read(central.bootstrap(), MAPPED, 1_000);
    let acks = read(edge.bootstrap(), "evd.acks", 10);
    stop.cancel();
    handle.join().unwrap();

    got.sort_by_key(|r| r.2);
    assert_eq!(got.len(), 1_000);
    for (i, (key, value, n, ts)) in got.iter().enumerate() {
        assert_eq!(
            (key.as_str(), value.as_str(), *n, *ts),
            (
                format!("agent-{}", i % 3).as_str(),
                format!("sealed-batch-{i}").as_str(),
                i,
                T0_MS + i as i64
            )
        );
    }
    assert_eq!(acks.len(), 10, "acks relayed central → edge");
    assert_eq!(metrics.total("records_forwarded"), 1_010);
    assert_eq!(metrics.total("skipped_offsets"), 0);
    assert_eq!(metrics.total("offset_resets"), 0);
    let text = metrics.render();
    assert!(text.contains("evd_bridge_records_forwarded_total{route=\"forward\",topic=\"evd.events.PageView\"} 1000"), "{text}");
}

#[test]
fn a_committed_offset_the_source_no_longer_has_is_reported() {
    let edge = MockBroker::start(1).unwrap();
    let central = MockBroker::start(1).unwrap();
    edge.create_topic(EVENTS, 1).unwrap();
    central.create_topic(MAPPED, 1).unwrap();
    central.create_topic("evd.acks", 1).unwrap();
    edge.create_topic("evd.acks", 1).unwrap();
    produce(edge.bootstrap(), EVENTS, 100);
    // The group's committed offset is past the end: as after the topic was deleted
    // and recreated under a running bridge group.
    let committer: BaseConsumer = client_config(edge.bootstrap())
        .set("group.id", "g2.forward")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(EVENTS, 0, Offset::Offset(500))
        .unwrap();
    committer.commit(&tpl, CommitMode::Sync).unwrap();
    drop(committer);

    let (metrics, stop, handle) = start(config(edge.bootstrap(), central.bootstrap(), "g2"));
    let got = read(central.bootstrap(), MAPPED, 100);
    stop.cancel();
    handle.join().unwrap();
    assert_eq!(got.len(), 100, "carried again from the earliest offset");
    assert!(
        metrics.total("offset_resets") >= 1,
        "the reset must be reported: {}",
        metrics.render()
    );
}

/// The partitions of `EVENTS` a bridge reports lag for, from its rendered metrics.
fn lag_partitions(metrics: &Metrics) -> BTreeSet<i32> {
    let prefix =
        format!("evd_bridge_lag_offsets{{route=\"forward\",topic=\"{EVENTS}\",partition=\"");
    metrics
        .render()
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix)?.split('"').next()?.parse().ok())
        .collect()
}

/// Waits up to `limit` for `done`; false if it never held.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// A second bridge joins a group whose first member owns every partition: after the
/// rebalance each carries its share, and each reports lag only for the partitions it
/// owns now (a series left behind for a partition that moved would hold its last
/// value for ever, and a lag alert on it would never clear).
#[test]
fn two_bridges_in_one_group_share_the_partitions_and_report_only_their_own() {
    let edge = MockBroker::start(1).unwrap();
    let central = MockBroker::start(1).unwrap();
    edge.create_topic(EVENTS, 4).unwrap();
    edge.create_topic("evd.acks", 1).unwrap();
    central.create_topic(MAPPED, 4).unwrap();
    central.create_topic("evd.acks", 1).unwrap();
    let all: BTreeSet<i32> = (0..4).collect();
    let (m1, stop1, h1) = start(config(edge.bootstrap(), central.bootstrap(), "g3"));
    let first_owns_all = wait_for(Duration::from_secs(90), || lag_partitions(&m1) == all);
    assert!(first_owns_all, "bridge 1 alone: {:?}", lag_partitions(&m1));

    let (m2, stop2, h2) = start(config(edge.bootstrap(), central.bootstrap(), "g3"));
    let split = wait_for(Duration::from_secs(90), || {
        let (p1, p2) = (lag_partitions(&m1), lag_partitions(&m2));
        !p1.is_empty() && !p2.is_empty() && p1.is_disjoint(&p2) && &p1 | &p2 == all
    });
    assert!(
        split,
        "after the rebalance each bridge reports its own partitions only: {:?} and {:?}",
        lag_partitions(&m1),
        lag_partitions(&m2)
    );

    produce(edge.bootstrap(), EVENTS, 2_000);
    let got = read(central.bootstrap(), MAPPED, 2_000);
    for stop in [&stop1, &stop2] {
        stop.cancel();
    }
    h1.join().unwrap();
    h2.join().unwrap();
    let mut ns: Vec<usize> = got.iter().map(|r| r.2).collect();
    ns.sort_unstable();
    ns.dedup();
    assert_eq!(ns.len(), 2_000, "every record arrived");
    let (a, b) = (m1.total("records_forwarded"), m2.total("records_forwarded"));
    println!("bridge 1 carried {a}, bridge 2 carried {b}");
    assert!(a > 0 && b > 0, "both bridges carried records: {a} and {b}");
    assert!(a + b >= 2_000);
}
