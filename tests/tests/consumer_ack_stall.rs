//! Acks are best effort and follow the commit; they must never hold up consuming. With
//! the acks topic's partition left without a leader (no ack can be delivered until one
//! returns), the consumer keeps reading, writing Parquet and committing offsets; once
//! the leader is back, the acks queued meanwhile arrive and the agent's spool frees
//! everything.

use std::time::{Duration, Instant};

use tests::agent_proc::AgentOptions;
use tests::bed::TestBed;
use tests::consumer_proc::ConsumerOptions;
use tests::oracle::send_ids;

async fn wait_for(what: impl Fn() -> String, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{}: not within {limit:?}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_acks_do_not_stop_the_consumer() {
    let bed = TestBed::builder()
        .mock(1)
        .partitions(1)
        .consumer(ConsumerOptions::new("c1", 300))
        .agent("host-s", AgentOptions::default())
        .start()
        .unwrap();
    let (mock, consumer, agent) = (bed.broker.mock(), bed.consumer(), bed.agent());
    let written = || consumer.process.metric("events_written").unwrap_or(0);

    mock.partition_leader("evd.acks", 0, None).unwrap();
    // Two rounds, each flushed on its own, while no ack can be delivered.
    for round in 1..=2u64 {
        let acked = send_ids(&agent.socket(), (round - 1) * 500..round * 500)
            .await
            .unwrap();
        assert_eq!(acked.len(), 500);
        wait_for(
            || {
                format!(
                    "round {round}: {} of {} rows written",
                    written(),
                    round * 500
                )
            },
            Duration::from_secs(30),
            || written() >= round * 500,
        )
        .await;
    }
    assert_eq!(
        agent.metric("batches_acked"),
        Some(0),
        "an ack was delivered"
    );

    mock.partition_leader("evd.acks", 0, Some(1)).unwrap();
    wait_for(
        || {
            format!(
                "acks after the leader returned: {:?} of {:?} batches",
                agent.metric("batches_acked"),
                agent.metric("batches_sealed")
            )
        },
        Duration::from_secs(60),
        || {
            agent.metric("spool_unacked_batches") == Some(0)
                && agent.metric("batches_acked") == agent.metric("batches_sealed")
        },
    )
    .await;
    assert_eq!(written(), 1_000);
}
