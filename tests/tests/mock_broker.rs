//! The MockCluster handle injects faults that an idempotent producer rides out.

use std::time::Duration;

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tests::{MockBroker, kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_survives_injected_errors_and_a_broker_outage() {
    let mock = MockBroker::start(3).unwrap();
    mock.create_topic("evd.test.faults", 3).unwrap();
    let producer = kafka::reliable_producer(mock.bootstrap()).unwrap();

    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    )
    .unwrap();
    let first: Vec<Vec<u8>> = (0..500u32).map(|i| format!("a{i}").into_bytes()).collect();
    kafka::produce_all(&producer, "evd.test.faults", &first)
        .await
        .unwrap();

    mock.round_trip_time(1, Duration::from_millis(50)).unwrap();
    mock.broker_down(2).unwrap();
    let outage = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        mock.broker_up(2).unwrap();
        mock
    });
    let second: Vec<Vec<u8>> = (0..500u32).map(|i| format!("b{i}").into_bytes()).collect();
    kafka::produce_all(&producer, "evd.test.faults", &second)
        .await
        .unwrap();
    let mock = outage.await.unwrap();

    let bootstrap = mock.bootstrap().to_string();
    let got = tokio::task::spawn_blocking(move || {
        kafka::consume_n(&bootstrap, "evd.test.faults", 1000, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .unwrap();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    got_sorted.dedup();
    assert_eq!(
        got_sorted.len(),
        1000,
        "lost or duplicated: {} messages, {} distinct",
        got.len(),
        got_sorted.len()
    );
}
