//! The bridge between two real brokers (tansu): agent → edge → bridge → central →
//! consumer → Parquet, and acks central → bridge → edge → agent. Every acked id must
//! be in Parquet exactly once and the agent's spool must drain, through bridge
//! kill -9s (one of them with the committed offsets gone), a dead destination and a
//! paused one. Deleting and recreating a source topic must be reported.

use std::time::{Duration, Instant};

use tests::RealBroker;
use tests::agent_proc::{AgentOptions, AgentProcess, test_master_keyring};
use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_drained};
use tests::oracle::{TestReader, persistent_client};
use tests::rng::Rng;

/// Edge and central brokers, a consumer on central, an agent on edge, a bridge.
fn sites() -> TestBed {
    let opts = AgentOptions {
        retransmit_after_ms: 10_000,
        ..AgentOptions::default()
    };
    TestBed::builder()
        .bridged()
        .consumer(ConsumerOptions::default())
        .agent("host-edge", opts)
        .start()
        .unwrap()
}

/// Sends `ids` from 4 clients; returns what was acked.
async fn send(agent: &AgentProcess, ids: std::ops::Range<u64>) -> Vec<u64> {
    let clients = 4;
    let mut handles = Vec::new();
    for c in 0..clients {
        let part: Vec<u64> = ids.clone().filter(|id| id % clients == c).collect();
        handles.push(tokio::spawn(persistent_client(agent.socket(), part)));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    acked
}

/// Waits until every acked id is on the central cluster, the agent's spool drained
/// (acks came back over the bridge), then checks Parquet: each id exactly once.
async fn check(s: &TestBed, acked: &[u64], total: u64) {
    let central = s.consumer_bootstrap();
    let expected = acked.to_vec();
    let started = Instant::now();
    let missing = tokio::task::spawn_blocking(move || {
        let mut reader = TestReader::new(&central, test_master_keyring(), false).unwrap();
        reader.wait_for(&expected, Duration::from_secs(300))
    })
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "{} acked ids never reached the central cluster, e.g. {:?}\nbridge:\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        s.bridge().log_tail()
    );
    println!(
        "all acked ids on central {:.1}s after sending ended",
        started.elapsed().as_secs_f64()
    );
    let secs = wait_drained(
        &[s.agent()],
        &s.consumer().process,
        Duration::from_secs(300),
    )
    .await;
    println!("agent spool drained (acks came back over the bridge) {secs:.1}s later");
    assert_exactly_once(&s.out(), acked, Some(total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_acks_cross_20_bridge_kill_9s() {
    let mut rng = Rng::from_env("bridge_e2e");
    let total: u64 = std::env::var("EVD_BRIDGE_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let mut s = sites();
    let kill_at: Vec<u64> = (0..20).map(|_| rng.range(200, 1_500)).collect();
    let mut bridge = s.bridge.take().unwrap();
    let killer = tokio::task::spawn_blocking(move || {
        for (n, pause) in kill_at.into_iter().enumerate() {
            // Kill a bridge that has joined its group and forwards: tansu 0.6.0 then and
            // again never assigned some partitions after a member died while joining.
            let joined = Instant::now();
            while bridge.metric("records_forwarded").unwrap_or(0) == 0
                && joined.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(pause));
            if n == 10 {
                bridge
                    .restart_without_offsets("bridge-offsets-lost")
                    .unwrap();
            } else {
                bridge.restart().unwrap();
            }
        }
        bridge
    });
    let acked = send(s.agent(), 0..total).await;
    s.bridge = Some(killer.await.unwrap());
    println!("{} events acked across 20 bridge kill -9s", acked.len());
    check(&s, &acked, total).await;
    assert_eq!(s.bridge().metric("skipped_offsets"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_waits_out_a_dead_then_a_paused_destination() {
    let total: u64 = 30_000;
    let mut s = sites();
    let mut acked = send(s.agent(), 0..10_000).await;
    central(&mut s).kill().unwrap();
    let down = Instant::now();
    acked.extend(send(s.agent(), 10_000..20_000).await);
    let left = Duration::from_secs(60).saturating_sub(down.elapsed());
    tokio::time::sleep(left).await;
    central(&mut s).restart().unwrap();
    println!("central was down {:.0}s", down.elapsed().as_secs_f64());
    central(&mut s).pause().unwrap();
    let paused = Instant::now();
    acked.extend(send(s.agent(), 20_000..total).await);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(paused.elapsed())).await;
    central(&mut s).resume().unwrap();
    println!("central was paused {:.0}s", paused.elapsed().as_secs_f64());
    // The central consumer is not under test here, and tansu 0.6.0 sometimes never
    // assigns partitions again to a member whose session timed out across its restart
    // and pause (seen: "assigned 18 partitions", the session timeout during the pause,
    // then nothing for 300 s). An operator restarts it; so does the test, cleanly.
    s.consumers[0].process.terminate().unwrap();
    s.consumers[0].spawn().unwrap();
    check(&s, &acked, total).await;
    assert_eq!(s.bridge().metric("skipped_offsets"), Some(0));
}

/// What a recreated source topic looks like to the bridge: its group's committed
/// offsets point past the topic's end. (tansu 0.6.0 never answered a DeleteTopics
/// request within 60 s here, so the test moves the offsets instead of the topic.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_past_the_end_of_a_source_topic_are_reported() {
    let mut s = sites();
    let acked = send(s.agent(), 0..2_000).await;
    let mut bridge = s.bridge.take().unwrap();
    bridge.process.kill9().unwrap();
    // The dead member's session must end before the group takes a commit.
    tokio::time::sleep(tests::consumer_proc::SESSION_TIMEOUT + Duration::from_secs(2)).await;
    let edge = s.bootstrap();
    tokio::task::spawn_blocking(move || {
        let topics: Vec<String> = tests::oracle::TYPES
            .iter()
            .map(|t| tests::oracle::topic(t))
            .collect();
        tests::kafka::commit_offsets(&edge, "bridge.forward", &topics, 3, 1_000_000).unwrap();
    })
    .await
    .unwrap();
    bridge.spawn().unwrap();
    s.bridge = Some(bridge);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let resets = s.bridge().metric("offset_resets").unwrap_or(0);
        if resets > 0 {
            println!("bridge reported {resets} offset resets");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reset was not reported\n{}",
            s.bridge().log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = s.bridge().log_tail();
    assert!(log.contains("RESET"), "a clear log line: {log}");
    // Carried again from the earliest offsets: nothing lost.
    check(&s, &acked, 2_000).await;
}

/// The central site's broker, to kill, pause and restart it.
fn central(s: &mut TestBed) -> &mut RealBroker {
    s.central.as_mut().expect("a bridged bed")
}
