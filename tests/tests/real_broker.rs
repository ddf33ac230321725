//! The real broker persists acknowledged messages across `kill -9` and restart.

use std::collections::BTreeSet;
use std::time::Duration;

use tests::{RealBroker, kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_survive_kill_9_and_restart() {
    let mut broker = RealBroker::start().expect("start tansu");
    broker
        .create_topic("evd.test.persist", 3)
        .expect("create topic");
    let values: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| format!("message-{i:05}").into_bytes())
        .collect();
    let producer = kafka::reliable_producer(&broker.bootstrap()).unwrap();
    kafka::produce_all(&producer, "evd.test.persist", &values)
        .await
        .unwrap_or_else(|e| panic!("produce: {e:#}\n{}", broker.log_tail()));
    drop(producer);

    broker.kill().unwrap();
    broker
        .restart()
        .unwrap_or_else(|e| panic!("restart: {e:#}"));

    let bootstrap = broker.bootstrap();
    let got = tokio::task::spawn_blocking(move || {
        kafka::consume_n(
            &bootstrap,
            "evd.test.persist",
            10_000,
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let distinct: BTreeSet<&[u8]> = got.iter().map(Vec::as_slice).collect();
    let want: BTreeSet<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let missing = want.difference(&distinct).count();
    assert_eq!(
        missing,
        0,
        "{missing} of 10000 acked messages lost across kill -9; got {}",
        got.len()
    );
}

#[test]
fn pause_and_resume_keep_the_broker_usable() {
    let broker = RealBroker::start().expect("start tansu");
    broker.pause().unwrap();
    assert!(!kafka::metadata_answers(
        &broker.bootstrap(),
        Duration::from_millis(500)
    ));
    broker.resume().unwrap();
    let mut answered = false;
    for _ in 0..50 {
        if kafka::metadata_answers(&broker.bootstrap(), Duration::from_secs(2)) {
            answered = true;
            break;
        }
    }
    assert!(answered, "broker did not answer after SIGCONT");
}
