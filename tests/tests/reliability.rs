//! The reliability suite in CI: fault scenarios on real processes (tansu brokers behind
//! fault-injecting proxies, agent, consumer, bridge), each judged by the oracle:
//! every acked id in Parquet exactly once, nothing phantom, and the agent's spool
//! drained. Each prints its figures; `EVD_SEED=<seed>` replays a schedule.
//!
//! The last two run deliberately broken builds (test-only switches) and require the
//! checker to catch them, so a checker that cannot fail would fail here.

use tests::scenario::{Fault, Scenario, run};

/// A rate-limited load, so the faults land while events flow.
fn scenario(name: &str, faults: &[Fault], events: u64) -> Scenario {
    let mut s = Scenario::new(name, faults, events);
    s.load.rate_per_s = Some(4_000);
    // Small sends keep a connection busy most of the time, so kills cut some.
    s.load.slice = 100;
    s
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_agent_kill_9s() {
    let mut s = scenario(
        "F1 agent kill -9 / pause",
        &[Fault::KillAgent, Fault::KillAgent, Fault::PauseAgent],
        40_000,
    );
    s.fault_gap_ms = (500, 1_500);
    let r = run(s).await;
    r.assert_exactly_once();
    assert!(r.faults.values().sum::<u32>() >= 3, "{}", r.figures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_consumer_kill_9s() {
    // Each kill waits for a working consumer (a killed member holds its partitions for
    // the 10 s session timeout): 20 s of load leaves room for three.
    let mut s = scenario("F2 consumer kill -9", &[Fault::KillConsumer], 80_000);
    s.fault_gap_ms = (500, 1_500);
    let r = run(s).await;
    r.assert_exactly_once();
    assert!(r.faults.values().sum::<u32>() >= 3, "{}", r.figures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_bridge_kill_9s_and_lost_offsets() {
    let s = scenario(
        "F3 bridge kill -9 / offsets lost",
        &[
            Fault::KillBridge,
            Fault::KillBridge,
            Fault::BridgeLosesOffsets,
        ],
        // Each kill waits for a working bridge: 20 s of load leaves room for three.
        80_000,
    );
    let r = run(s).await;
    r.assert_exactly_once();
    assert!(r.faults.values().sum::<u32>() >= 3, "{}", r.figures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_broker_restart_pause_and_partition() {
    let mut s = scenario(
        "F4 broker restart / pause / partition / cut / slow link",
        &[
            Fault::RestartBroker,
            Fault::PauseBroker,
            Fault::Blackhole,
            Fault::CutConnections,
            Fault::SlowLink,
        ],
        120_000,
    );
    // Every fault lasts at most 10 s and gaps 1.5 s: four kinds start within 30 s.
    s.fault_gap_ms = (500, 1_500);
    let r = run(s).await;
    r.assert_exactly_once();
    assert!(
        r.faults.len() >= 4,
        "several kinds of fault: {}",
        r.figures()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_object_store_errors_and_lost_replies() {
    let mut s = scenario("F5 object-store faults", &[], 30_000);
    s.consumer_env = env(&[("EVD_TEST_STORE_FAULTS", "error=0.05,lost_reply=0.05")]);
    let r = run(s).await;
    r.assert_exactly_once();
    assert!(
        r.consumer_metrics["store_retries"] > 0,
        "faults were injected and retried: {}",
        r.figures()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_thirty_percent_of_acks_dropped() {
    let mut s = scenario("F6 30% acks dropped", &[], 30_000);
    s.agent_env = env(&[("EVD_TEST_DROP_ACKS_PERCENT", "30")]);
    let r = run(s).await;
    r.assert_exactly_once();
    assert!(
        r.consumer_metrics["duplicates_dropped"] > 0,
        "retransmits reached the consumer and were dropped: {}",
        r.figures()
    );
}

/// A spool deleted and re-created under the same agent id halfway (after a drain),
/// with agent and consumer kills throughout: the new spool's batches (seq 1 again)
/// are new data, not duplicates of the old spool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f7_spool_recreated_under_the_same_agent_id() {
    let mut s = scenario(
        "F7 spool re-created + agent/consumer kill -9",
        &[Fault::KillAgent, Fault::KillConsumer],
        40_000,
    );
    s.recreate_spool_midway = true;
    s.fault_gap_ms = (1_000, 2_000);
    let r = run(s).await;
    r.assert_exactly_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_every_fault_at_once() {
    let mut s = scenario("mixed", &Fault::ALL, 120_000);
    s.fault_gap_ms = (500, 1_500);
    s.agent_env = env(&[("EVD_TEST_DROP_ACKS_PERCENT", "30")]);
    s.consumer_env = env(&[("EVD_TEST_STORE_FAULTS", "error=0.03,lost_reply=0.03")]);
    let r = run(s).await;
    r.assert_exactly_once();
    assert!(
        r.faults.len() >= 4,
        "several kinds of fault: {}",
        r.figures()
    );
}

/// An agent that acks before its events are spooled: kill -9s lose acked events, and
/// the checker must say so and where they were (nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_agent_acking_before_fsync_is_caught() {
    let mut s = scenario("broken: agent acks early, F1", &[Fault::KillAgent], 40_000);
    s.load.rate_per_s = None;
    // Long enough at full speed for several kills after the warm-up.
    s.load.total = Some(600_000);
    s.fault_gap_ms = (300, 800);
    s.agent_env = env(&[("EVD_TEST_ACK_EARLY", "1")]);
    let r = run(s).await;
    assert!(
        !r.verdict.lost.is_empty(),
        "the checker missed it: {}",
        r.figures()
    );
    assert!(r.verdict.lost_at.contains_key("nowhere"), "{}", r.figures());
}

/// A consumer that skips its dedup: retransmitted batches are written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_consumer_without_dedup_is_caught() {
    let mut s = scenario("broken: consumer skips dedup, F6", &[], 30_000);
    s.agent_env = env(&[("EVD_TEST_DROP_ACKS_PERCENT", "30")]);
    s.consumer_env = env(&[("EVD_TEST_SKIP_DEDUP", "1")]);
    let r = run(s).await;
    assert!(
        !r.verdict.dup.is_empty(),
        "the checker missed it: {}",
        r.figures()
    );
}
