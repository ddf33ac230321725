//! Acks fan-out: each agent reads only the partition of `evd.acks` its id maps to, so
//! what an agent reads grows with the agents sharing its partition, not with every
//! agent. Four agents whose ids map to four different partitions of an 8-partition
//! acks topic each read exactly their own acks, and commit offsets on no other
//! partition. A second test pins the partition function to librdkafka's own
//! `murmur2_random` partitioner, which every acks producer is configured with.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tests::MockBroker;
use tests::agent_proc::{AgentOptions, AgentProcess, test_master_keyring};
use tests::oracle::{TestReader, send_ids};

use evd_schemas::wire::ack_partition::{PARTITIONER, partition_for};

const PARTITIONS: i32 = 8;

/// Agent ids whose home partitions differ.
fn agents_on_distinct_partitions(n: usize) -> Vec<(String, i32)> {
    let mut taken = BTreeMap::new();
    for i in 0.. {
        let id = format!("fan-{i}");
        let p = partition_for(&id, PARTITIONS);
        taken.entry(p).or_insert(id);
        if taken.len() == n {
            break;
        }
    }
    taken.into_iter().map(|(p, id)| (id, p)).collect()
}

/// Partitions of `evd.acks` with an offset committed by the agent's group.
fn committed_partitions(bootstrap: &str, agent_id: &str) -> Vec<i32> {
    let consumer: BaseConsumer = tests::kafka::client_config(bootstrap)
        .set("group.id", format!("evd-agent-{agent_id}"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition("evd.acks", p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .filter(|e| matches!(e.offset(), Offset::Offset(_)))
        .map(|e| e.partition())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_reads_only_its_own_partition_of_the_acks_topic() {
    let mock = MockBroker::start(1).unwrap();
    for t in tests::oracle::TYPES.iter().chain(&["LogLine"]) {
        mock.create_topic(&tests::oracle::topic(t), 1).unwrap();
    }
    mock.create_topic("evd.audit", 1).unwrap();
    mock.create_topic("evd.acks", PARTITIONS).unwrap();
    let agents = agents_on_distinct_partitions(4);
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Vec::new();
    for (id, _) in &agents {
        let agent = AgentProcess::start(
            &dir.path().join(id),
            id,
            mock.bootstrap(),
            AgentOptions::default(),
        )
        .unwrap();
        procs.push(agent);
    }
    for (i, agent) in procs.iter().enumerate() {
        let ids = (i as u64 * 10_000)..(i as u64 * 10_000 + 1_500);
        assert_eq!(send_ids(&agent.socket(), ids).await.unwrap().len(), 1_500);
    }
    let bootstrap = mock.bootstrap().to_string();
    let mut reader = tokio::task::spawn_blocking(move || {
        TestReader::new(&bootstrap, test_master_keyring(), true).unwrap()
    })
    .await
    .unwrap();
    let want: Vec<u64> = (0..4u64)
        .flat_map(|i| (i * 10_000)..(i * 10_000 + 1_500))
        .collect();
    let missing =
        tokio::task::spawn_blocking(move || reader.wait_for(&want, Duration::from_secs(60)))
            .await
            .unwrap();
    assert!(
        missing.is_empty(),
        "{} ids never reached Kafka",
        missing.len()
    );
    for agent in &procs {
        for _ in 0..300 {
            if agent.metric("spool_unacked_batches") == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            agent.metric("spool_unacked_batches"),
            Some(0),
            "{}",
            agent.log_tail()
        );
    }
    // Every ack record on the topic, by key.
    let bootstrap = mock.bootstrap().to_string();
    let acks = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = tests::kafka::client_config(&bootstrap)
            .set("group.id", "fanout-count")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["evd.acks"]).unwrap();
        let mut by_key: BTreeMap<String, (u64, i32)> = BTreeMap::new();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                let e = by_key.entry(key).or_insert((0, m.partition()));
                e.0 += 1;
            }
        }
        by_key
    })
    .await
    .unwrap();
    // Auto-committed offsets land every 5 s; wait for each agent's first commit.
    let waited = std::time::Instant::now();
    while agents
        .iter()
        .any(|(id, _)| committed_partitions(mock.bootstrap(), id).is_empty())
    {
        assert!(
            waited.elapsed() < Duration::from_secs(90),
            "an agent committed no ack offset in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut total_read = 0;
    for ((id, home), agent) in agents.iter().zip(&procs) {
        let (own, partition) = acks[id];
        assert_eq!(partition, *home, "{id}'s acks are on its home partition");
        let read = agent.metric("acks_records_read");
        assert_eq!(read, Some(own), "{id} read its {own} acks and nothing else");
        total_read += own;
        let committed = committed_partitions(mock.bootstrap(), id);
        assert_eq!(
            committed,
            vec![*home],
            "{id} commits only its home partition"
        );
    }
    let all: u64 = acks.values().map(|(n, _)| n).sum();
    assert_eq!(
        total_read, all,
        "every ack record is read once, by its agent"
    );
}

/// `partition_for` is where librdkafka's `murmur2_random` puts a keyed record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_function_matches_librdkafkas_partitioner() {
    let mock = MockBroker::start(1).unwrap();
    for n in [3, 8, 13] {
        mock.create_topic(&format!("p{n}"), n).unwrap();
    }
    let producer: FutureProducer = tests::kafka::client_config(mock.bootstrap())
        .set("partitioner", PARTITIONER)
        .create()
        .unwrap();
    for n in [3, 8, 13] {
        for i in 0..200 {
            let id = format!("host-{i}.example-{}", "x".repeat(i % 7));
            let partition = producer
                .send(
                    FutureRecord::to(&format!("p{n}")).key(&id).payload("a"),
                    Duration::from_secs(10),
                )
                .await
                .unwrap()
                .partition;
            assert_eq!(partition, partition_for(&id, n), "{id} on {n} partitions");
        }
    }
}
