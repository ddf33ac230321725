//! Two consumers in one group split 6-partition topics; killing one moves its
//! partitions to the other; nothing is lost or written twice.
//!
//! Runs on MockCluster: tansu 0.6.0 did not move a dead member's partitions to the
//! surviving member here (no rebalance after the session timeout), while librdkafka's
//! mock group coordinator expires sessions like Kafka does.

use std::time::{Duration, Instant};

use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::bed::TestBed;
use tests::consumer_proc::{
    ConsumerOptions, ConsumerProcess, assert_exactly_once, wait_drained, wait_settled,
};
use tests::oracle::send_ids;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_the_work_and_survive_losing_one() {
    // Batches are keyed by agent id, so several agents spread over the partitions.
    let opts = || AgentOptions {
        retransmit_after_ms: 3_000,
        ..AgentOptions::default()
    };
    let mut bed = TestBed::builder()
        .mock(3)
        .partitions(6)
        .consumer(ConsumerOptions::new("c1", 300))
        .consumer(ConsumerOptions::new("c2", 300))
        .agent("host-0", opts())
        .agent("host-1", opts())
        .agent("host-2", opts())
        .start()
        .unwrap();
    let mut c2 = bed.consumers.pop().unwrap();
    let (c1, agents, out) = (bed.consumer(), &bed.agents, bed.out());
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

    let assigned = |c: &ConsumerProcess| c.process.metric("assigned_partitions").unwrap_or(0);
    let (before1, before2) = (assigned(c1), assigned(&c2));
    assert!(
        before1 > 0 && before2 > 0,
        "both own partitions: {before1}, {before2}"
    );

    // One member dies for good; the other takes its partitions.
    c2.process.kill9().unwrap();
    acked.extend(send_round(next).await);

    let refs: Vec<&AgentProcess> = agents.iter().collect();
    let secs = wait_drained(&refs, &c1.process, Duration::from_secs(180)).await;
    println!("drained {secs:.1}s after the kill");
    assert_eq!(
        assigned(c1),
        before1 + before2,
        "the survivor owns every partition"
    );
    assert_exactly_once(&out, &acked, Some(next + 3 * per_round));
}

/// A consumer paused (SIGSTOP) past its session timeout loses its partitions; when it
/// resumes it must not commit the batches it held, which the new owner read and
/// committed meanwhile (the zombie fence in `consumer/src/run.rs`): 0 duplicate rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_paused_past_its_session_timeout_writes_nothing_twice() {
    // Long flushes, so the paused consumer holds a buffer.
    let opts = AgentOptions {
        retransmit_after_ms: 5_000,
        ..AgentOptions::default()
    };
    let bed = TestBed::builder()
        .mock(1)
        .partitions(4)
        .consumer(ConsumerOptions::new("c1", 4_000))
        .consumer(ConsumerOptions::new("c2", 4_000))
        .agent("host-z", opts)
        .start()
        .unwrap();
    let (c1, c2) = (&bed.consumers[0], &bed.consumers[1]);
    let (agent, out) = (bed.agent(), bed.out());
    let mut acked = send_ids(&agent.socket(), 0..5_000).await.unwrap();
    // One agent's batches share a key, so one consumer gets them: that one is frozen
    // mid-buffer for 20 s (its session timeout is 6 s) while events keep coming, long
    // enough for the other to take over and commit. Without the fence this test writes
    // thousands of rows twice.
    let started = Instant::now();
    let busy = |c: &ConsumerProcess| c.process.metric("batches_consumed").unwrap_or(0);
    while busy(c1) + busy(c2) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing consumed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (zombie, survivor) = if busy(c1) > 0 { (c1, c2) } else { (c2, c1) };
    let before = busy(zombie);
    acked.extend(send_ids(&agent.socket(), 200_000..202_000).await.unwrap());
    let wait = Instant::now();
    while busy(zombie) == before && wait.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    zombie.process.signal(libc::SIGSTOP);
    for round in 0..20u64 {
        let from = 300_000 + round * 500;
        acked.extend(send_ids(&agent.socket(), from..from + 500).await.unwrap());
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    zombie.process.signal(libc::SIGCONT);
    acked.extend(send_ids(&agent.socket(), 400_000..401_000).await.unwrap());
    // `wait_settled`, not `wait_drained`: right after the last send nothing may be
    // sealed yet, and the spool would look drained before the last 1,000 events left
    // (seen: "drained 0.0s", then 1,000 acked ids not in Parquet 6 s later).
    let sealed = wait_settled(agent, &survivor.process, Duration::from_secs(120)).await;
    println!("drained after the pause ({sealed} batches sealed)");
    // Give the resumed consumer time for a stale flush, then check: every id once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    println!("paused consumer's log:\n{}", zombie.process.log_tail());
    assert_exactly_once(&out, &acked, None);
}

/// A flush stuck in slow staging uploads past `max.poll.interval.ms`: its consumer is
/// out of the group and the other member commits the same batches meanwhile. The fence
/// used to run before encoding and uploads, so the stuck flush committed them again
/// when its uploads finished; now it runs right before the commit point (and checks
/// the manifests committed since): 0 duplicate rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_slower_than_the_poll_interval_writes_nothing_twice() {
    let props = r#"consumer = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500", "max.poll.interval.ms" = "7000" }"#;
    // Both members take the short poll interval; the slow one's staging uploads stall.
    let member = |id: &str, env: Vec<(String, String)>| ConsumerOptions {
        env,
        kafka: props.into(),
        ..ConsumerOptions::new(id, 500)
    };
    let slow_staging = (
        "EVD_TEST_STORE_FAULTS".to_string(),
        "slow_staging_ms=5000".to_string(),
    );
    let opts = AgentOptions {
        retransmit_after_ms: 5_000,
        ..AgentOptions::default()
    };
    let mut bed = TestBed::builder()
        .mock(1)
        .partitions(4)
        .consumer(member("slow", vec![slow_staging]))
        .agent("host-s", opts)
        .start()
        .unwrap();
    let (agent, slow) = (bed.agents.remove(0), bed.consumers.remove(0));
    let out = bed.out();
    let mut acked = send_ids(&agent.socket(), 0..2_000).await.unwrap();
    let started = Instant::now();
    while slow.process.metric("batches_consumed").unwrap_or(0) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing consumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its first flush starts within 0.5 s and then sits in its staging uploads (5 s
    // per file, one file per event type: over 7 s): only then does the second member
    // join (a rebalance noticed before the uploads would abandon the flush early and
    // prove nothing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fast = bed.add_consumer(member("fast", vec![])).unwrap();
    for round in 0..10u64 {
        let from = 100_000 + round * 500;
        acked.extend(send_ids(&agent.socket(), from..from + 500).await.unwrap());
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    let secs = wait_drained(&[&agent], &fast.process, Duration::from_secs(180)).await;
    println!("drained {secs:.1}s after the load");
    // Wait until the stuck flush has reached its commit point (and been refused).
    let reached = |c: &ConsumerProcess| {
        c.process.metric("flushes_fenced").unwrap_or(0) + c.process.metric("flushes").unwrap_or(0)
    };
    let wait = Instant::now();
    while reached(&slow) == 0 && wait.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "slow consumer: flushes {:?}, fenced {:?}; log:\n{}",
        slow.process.metric("flushes"),
        slow.process.metric("flushes_fenced"),
        slow.process.log_tail()
    );
    assert!(
        reached(&slow) > 0,
        "the slow flush never reached its commit point"
    );
    assert_exactly_once(&out, &acked, None);
}
