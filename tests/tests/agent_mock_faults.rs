//! F5: produce errors injected by MockCluster (each 1×, 5×, 50×), a transport failure
//! and a broker down for 30 s: every batch is eventually delivered and acked.

use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tests::MockBroker;
use tests::agent_proc::{AgentOptions, test_master_keyring};
use tests::bed::TestBed;
use tests::oracle::{TestReader, send_ids};

const ERRORS: [RDKafkaRespErr; 4] = [
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
];

/// A fault to inject before one round of events.
type Inject = Box<dyn Fn(&MockBroker)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_is_delivered_through_injected_faults() {
    let opts = AgentOptions {
        retransmit_after_ms: 5_000,
        ..AgentOptions::default()
    };
    let mut bed = TestBed::builder()
        .mock(3)
        .partitions(3)
        .agent("host-m", opts)
        .start()
        .unwrap();
    let agent = bed.agents.remove(0);
    let mock = bed.broker.mock();
    let bootstrap = mock.bootstrap().to_string();
    let mut reader = tokio::task::spawn_blocking(move || {
        TestReader::new(&bootstrap, test_master_keyring(), true).unwrap()
    })
    .await
    .unwrap();

    let mut next_id = 0u64;
    let mut scenarios: Vec<(String, Inject)> = Vec::new();
    for err in ERRORS {
        for times in [1usize, 5, 50] {
            scenarios.push((
                format!("{err:?} x{times}"),
                Box::new(move |m: &MockBroker| {
                    m.request_errors(RDKafkaApiKey::Produce, &vec![err; times])
                        .unwrap()
                }),
            ));
        }
    }
    scenarios.push((
        "transport failure (all brokers down 2 s)".into(),
        Box::new(|m: &MockBroker| {
            for id in 1..=3 {
                m.broker_down(id).unwrap();
            }
            std::thread::sleep(Duration::from_secs(2));
            for id in 1..=3 {
                m.broker_up(id).unwrap();
            }
        }),
    ));
    for (name, inject) in &scenarios {
        inject(mock);
        let ids: Vec<u64> = (next_id..next_id + 2_000).collect();
        next_id += 2_000;
        let acked = send_ids(&agent.socket(), ids.iter().copied())
            .await
            .unwrap();
        assert_eq!(
            acked.len(),
            ids.len(),
            "{name}: the spool acks regardless of Kafka"
        );
        let started = Instant::now();
        let (missing, r) = tokio::task::spawn_blocking(move || {
            let missing = reader.wait_for(&acked, Duration::from_secs(120));
            (missing, reader)
        })
        .await
        .unwrap();
        reader = r;
        assert!(
            missing.is_empty(),
            "{name}: {} events not delivered\n{}",
            missing.len(),
            agent.log_tail()
        );
        println!(
            "{name}: delivered in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        mock.clear_request_errors(RDKafkaApiKey::Produce).unwrap();
    }

    // Broker down for 30 s while events arrive: they wait in the spool.
    for id in 1..=3 {
        mock.broker_down(id).unwrap();
    }
    let ids: Vec<u64> = (next_id..next_id + 5_000).collect();
    let acked = send_ids(&agent.socket(), ids.iter().copied())
        .await
        .unwrap();
    assert_eq!(acked.len(), ids.len());
    tokio::time::sleep(Duration::from_secs(30)).await;
    for id in 1..=3 {
        mock.broker_up(id).unwrap();
    }
    let (missing, mut reader) = tokio::task::spawn_blocking(move || {
        let missing = reader.wait_for(&acked, Duration::from_secs(120));
        (missing, reader)
    })
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "broker down 30 s: {} events not delivered\n{}",
        missing.len(),
        agent.log_tail()
    );

    // Everything acked end to end: the spool drains.
    let drained = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            reader.poll_for(Duration::from_millis(500));
            if agent.metric("spool_unacked_batches") == Some(0) {
                return (true, agent);
            }
        }
        (false, agent)
    })
    .await
    .unwrap();
    assert!(drained.0, "spool did not drain\n{}", drained.1.log_tail());
    println!(
        "kafka errors retried: {:?}; producers recreated: {:?}",
        drained.1.metric("kafka_errors"),
        drained.1.metric("kafka_producer_recreated")
    );
}

/// A produce error a retry cannot cure (here the broker's MSG_SIZE_TOO_LARGE) is
/// reported as such (metric, log line) and the batch is kept, not dropped: once the
/// cause is gone it is delivered. Before, it was one more "retrying" line every few
/// seconds, forever, with nothing for an alert to see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_produce_error_is_reported_and_the_batch_kept() {
    let opts = AgentOptions {
        retransmit_after_ms: 3_000,
        ..AgentOptions::default()
    };
    let mut bed = TestBed::builder()
        .mock(1)
        .partitions(1)
        .agent("host-p", opts)
        .start()
        .unwrap();
    let agent = bed.agents.remove(0);
    let mock = bed.broker.mock();
    let bootstrap = mock.bootstrap().to_string();
    let mut reader = tokio::task::spawn_blocking(move || {
        TestReader::new(&bootstrap, test_master_keyring(), true).unwrap()
    })
    .await
    .unwrap();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 2],
    )
    .unwrap();
    let acked = send_ids(&agent.socket(), 0..100).await.unwrap();
    let started = Instant::now();
    while agent.metric("kafka_permanent_errors").unwrap_or(0) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not reported: {:?}\n{}",
            agent.metric("kafka_permanent_errors"),
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agent.log_tail().contains("PERMANENT produce error"));
    let missing =
        tokio::task::spawn_blocking(move || reader.wait_for(&acked, Duration::from_secs(60)))
            .await
            .unwrap();
    assert!(
        missing.is_empty(),
        "{} events lost\n{}",
        missing.len(),
        agent.log_tail()
    );
}
