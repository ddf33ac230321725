//! Two consumers in one group split 6-partition topics; killing one moves its
//! partitions to the other; nothing is lost or written twice.
//!
//! Runs on MockCluster: tansu 0.6.0 did not move a dead member's partitions to the
//! surviving member here (no rebalance after the session timeout), while librdkafka's
//! mock group coordinator expires sessions like Kafka does.

use std::time::{Duration, Instant};

use tests::MockBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::consumer_proc::{ConsumerProcess, assert_exactly_once, wait_drained};
use tests::oracle::{TYPES, send_ids, topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_the_work_and_survive_losing_one() {
    let broker = MockBroker::start(3).unwrap();
    for t in TYPES.iter().chain(&["LogLine"]) {
        broker.create_topic(&topic(t), 6).unwrap();
    }
    broker.create_topic("evd.acks", 1).unwrap();
    broker.create_topic("evd.audit", 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let c1 = ConsumerProcess::start(
        &dir.path().join("c1"),
        "c1",
        broker.bootstrap(),
        &out,
        300,
        &[],
    )
    .unwrap();
    let mut c2 = ConsumerProcess::start(
        &dir.path().join("c2"),
        "c2",
        broker.bootstrap(),
        &out,
        300,
        &[],
    )
    .unwrap();
    // Batches are keyed by agent id, so several agents spread over the partitions.
    let agents: Vec<AgentProcess> = (0..3)
        .map(|i| {
            let opts = AgentOptions {
                retransmit_after_ms: 3_000,
                ..AgentOptions::default()
            };
            AgentProcess::start(
                &dir.path().join(format!("a{i}")),
                &format!("host-{i}"),
                broker.bootstrap(),
                opts,
            )
            .unwrap()
        })
        .collect();
    let per_round = std::env::var("EVD_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000u64)
        / 6;
    let mut acked = Vec::new();
    let mut next = 0u64;
    let send_round = |next: u64| {
        let sockets: Vec<_> = agents.iter().map(AgentProcess::socket).collect();
        async move {
            let mut handles = Vec::new();
            for (i, socket) in sockets.into_iter().enumerate() {
                let from = next + i as u64 * per_round;
                handles.push(tokio::spawn(async move {
                    send_ids(&socket, from..from + per_round).await.unwrap()
                }));
            }
            let mut acked = Vec::new();
            for h in handles {
                acked.extend(h.await.unwrap());
            }
            acked
        }
    };
    acked.extend(send_round(next).await);
    next += 3 * per_round;

    // Both members get work.
    let started = Instant::now();
    while c1.process.metric("events_written").unwrap_or(0) == 0
        || c2.process.metric("events_written").unwrap_or(0) == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "work was not split: c1 {:?}, c2 {:?}",
            c1.process.metric("events_written"),
            c2.process.metric("events_written")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "split: c1 wrote {:?}, c2 wrote {:?}",
        c1.process.metric("events_written"),
        c2.process.metric("events_written")
    );

    // One member dies for good; the other takes its partitions.
    c2.process.kill9().unwrap();
    acked.extend(send_round(next).await);

    let refs: Vec<&AgentProcess> = agents.iter().collect();
    let secs = wait_drained(&refs, &c1.process, Duration::from_secs(180)).await;
    println!("drained {secs:.1}s after the kill");
    assert_exactly_once(&out, &acked, Some(next + 3 * per_round));
}
