//! F1 (agent side): kill -9 the agent at random moments; clients reconnect and resend
//! what was not acked, with client event ids. Every acked event must reach Kafka, the
//! spool must drain, and with the consumer every acked id is in Parquet exactly once:
//! a resent line the agent had already made durable is not stored twice.

use std::time::{Duration, Instant};

use tests::agent_proc::{AgentOptions, test_master_keyring};
use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_drained};
use tests::oracle::{TestReader, persistent_client};
use tests::rng::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_survive_20_agent_kill_9s() {
    let mut rng = Rng::from_env("agent_kill9");
    let total: u64 = std::env::var("EVD_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let kills = 20;
    let opts = AgentOptions {
        retransmit_after_ms: 5_000,
        ..AgentOptions::default()
    };
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .agent("host-k", opts)
        .start()
        .unwrap();
    let mut agent = bed.agents.remove(0);
    let (consumer, out) = (bed.consumer(), bed.out());

    let clients = 4;
    let mut handles = Vec::new();
    for c in 0..clients {
        let ids: Vec<u64> = (0..total).filter(|id| id % clients == c).collect();
        handles.push(tokio::spawn(persistent_client(agent.socket(), ids)));
    }
    // Every kill happens: late ones hit the drain (retransmits, acks in flight).
    let kill_at: Vec<u64> = (0..kills).map(|_| rng.range(10, 150)).collect();
    let killer = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        for pause in kill_at {
            std::thread::sleep(Duration::from_millis(pause));
            agent
                .restart()
                .unwrap_or_else(|e| panic!("restart {n}: {e:#}"));
            n += 1;
        }
        (agent, n)
    });
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    let (agent, kills_done) = killer.await.unwrap();
    assert_eq!(kills_done, kills);
    println!(
        "{} events acked across {kills_done} agent kill -9s",
        acked.len()
    );

    let bootstrap = bed.bootstrap();
    let started = Instant::now();
    let expected = acked.clone();
    let (missing, reader) = tokio::task::spawn_blocking(move || {
        let mut reader = TestReader::new(&bootstrap, test_master_keyring(), false).unwrap();
        let missing = reader.wait_for(&expected, Duration::from_secs(240));
        (missing, reader)
    })
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "{} acked events lost after kill -9s, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        agent.log_tail()
    );
    assert_eq!(reader.bad_batches, 0);
    println!(
        "all acked ids in Kafka {:.1}s after the last kill; {} batches; {} resent lines answered from the id window",
        started.elapsed().as_secs_f64(),
        reader.batches.len(),
        agent.metric("duplicate_ids").unwrap_or(0)
    );
    let secs = wait_drained(&[&agent], &consumer.process, Duration::from_secs(180)).await;
    println!("spool drained {secs:.1}s later");
    assert_exactly_once(&out, &acked, Some(total));
}
