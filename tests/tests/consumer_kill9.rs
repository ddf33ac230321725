//! F2: the consumer dies 30 times — injected aborts at every step of the commit
//! protocol (after staging, after the manifest, mid-copy, after done, after offsets,
//! after acks) and plain kill -9s — while an agent sends. After a clean drain: 0 lost,
//! 0 duplicate rows, and no final file that a manifest does not account for.

use std::time::{Duration, Instant};

use tests::agent_proc::AgentOptions;
use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_drained};
use tests::oracle::send_ids;
use tests::rng::Rng;

const STEPS: [&str; 6] = ["staged", "manifest", "copy", "done", "offsets", "acks"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_survives_30_deaths_at_every_commit_step() {
    let mut rng = Rng::from_env("consumer_kill9");
    let total: u64 = std::env::var("EVD_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let opts = AgentOptions {
        retransmit_after_ms: 3_000,
        ..AgentOptions::default()
    };
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::new("c1", 200))
        .agent("host-c", opts)
        .start()
        .unwrap();
    let mut consumer = bed.consumers.remove(0);
    let (agent, out) = (bed.agent(), bed.out());

    // Send in the background for as long as the consumer keeps dying, so every death
    // finds flushes in progress.
    let socket = agent.socket();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_sending = stop.clone();
    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        // A steady trickle (about 4 chunks a second) until the deaths are done and at
        // least `total` events were sent.
        let chunk = (total / 100).max(100);
        let mut next = 0;
        while !stop_sending.load(std::sync::atomic::Ordering::SeqCst) || next < total {
            acked.extend(send_ids(&socket, next..next + chunk).await.unwrap());
            next += chunk;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        acked
    });

    let mut deaths = 0;
    let mut by_step = std::collections::BTreeMap::new();
    while deaths < 30 {
        // Alternate: an injected abort at a chosen step, or a kill -9 at a random moment.
        let injected = deaths % 2 == 0;
        let step = STEPS[(rng.next_u64() % STEPS.len() as u64) as usize];
        consumer.process.env = if injected {
            vec![
                ("EVD_CRASH_AT".into(), step.into()),
                ("EVD_CRASH_PROBABILITY".into(), "1".into()),
            ]
        } else {
            vec![]
        };
        consumer.restart().unwrap();
        if injected {
            // Wait for the abort (the next flush reaches the step), bounded.
            let until = Instant::now() + Duration::from_secs(10);
            while consumer.process.is_running() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if consumer.process.is_running() {
                continue; // nothing to flush yet; try again
            }
            *by_step.entry(step).or_insert(0) += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.range(50, 600))).await;
            consumer.process.kill9().unwrap();
            *by_step.entry("kill -9").or_insert(0) += 1;
        }
        deaths += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = sender.await.unwrap();
    println!("30 consumer deaths: {by_step:?}");

    // Clean consumer; wait for the agent's spool to drain.
    consumer.process.env = vec![];
    consumer.restart().unwrap();
    let secs = wait_drained(&[agent], &consumer.process, Duration::from_secs(240)).await;
    println!("drained {secs:.1}s after the last death");
    assert_exactly_once(&out, &acked, None);
}
