//! A consumer that runs for long without a rebalance keeps its output's live flush
//! manifests bounded: it folds finished ones into ledger snapshots as it goes, not only
//! when it starts or rebalances (which would then read every manifest since).

use std::time::Duration;

use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_drained};
use tests::oracle::send_ids;

const COMPACT_AFTER: usize = 3;

fn count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_consumer_keeps_live_manifests_bounded() {
    let bed = TestBed::builder()
        .consumer(ConsumerOptions {
            extra: format!("compact_after_manifests = {COMPACT_AFTER}"),
            ..ConsumerOptions::default()
        })
        .agent("host-a", tests::agent_proc::AgentOptions::default())
        .start()
        .unwrap();
    let (agent, consumer, out) = (bed.agent(), bed.consumer(), bed.out());
    let manifests = out.join("_evd/manifests");

    // Events every 500 ms for 15 s: a flush (every second) with batches most seconds.
    let mut acked = Vec::new();
    let mut most_live = 0;
    for round in 0..30u64 {
        let ids = round * 10..round * 10 + 10;
        acked.extend(send_ids(&agent.socket(), ids).await.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
        most_live = most_live.max(count(&manifests));
    }
    wait_drained(&[agent], &consumer.process, Duration::from_secs(60)).await;
    let snapshots = count(&out.join("_evd/ledger"));
    println!(
        "live manifests at most {most_live}, now {}; snapshots {snapshots}",
        count(&manifests)
    );
    // A flush in progress may be live beside the ones waiting to be folded.
    assert!(
        most_live <= COMPACT_AFTER + 2,
        "{most_live} live manifests (compact after {COMPACT_AFTER})"
    );
    assert!(snapshots > 0, "no ledger snapshot was written");
    assert_exactly_once(&out, &acked, Some(300));
}
