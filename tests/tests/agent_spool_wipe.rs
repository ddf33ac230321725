//! A spool wiped and re-created under the same agent id (a replaced disk, an
//! ephemeral container volume, `rm -rf` of the spool) starts again at batch seq 1.
//! Its batches are new data, not duplicates of the first spool's batches: before the
//! spool incarnation existed, the consumer dropped them as duplicates, acked them, and
//! the agent freed them — every event acked after the wipe was lost, every metric green.

use std::time::Duration;

use tests::agent_proc::AgentOptions;
use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_settled};
use tests::oracle::send_ids;

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_wiped_under_the_same_agent_id_loses_nothing() {
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .agent("host-w", AgentOptions::default())
        .start()
        .unwrap();
    let mut agent = bed.agents.remove(0);
    let (consumer, out) = (bed.consumer(), bed.out());
    let mut acked = send_ids(&agent.socket(), 0..3_000).await.unwrap();
    assert_eq!(acked.len(), 3_000);
    let first_sealed = wait_settled(&agent, &consumer.process, LIMIT).await;

    // kill -9, wipe the spool, start again with the same id, keys and config.
    agent.kill9().unwrap();
    std::fs::remove_dir_all(agent.dir.join("spool")).unwrap();
    agent.restart().unwrap();
    acked.extend(send_ids(&agent.socket(), 3_000..6_000).await.unwrap());
    assert_eq!(acked.len(), 6_000);
    let second_sealed = wait_settled(&agent, &consumer.process, LIMIT).await;
    println!(
        "first spool sealed {first_sealed} batches, the second {second_sealed}; the consumer dropped {:?} as duplicates",
        consumer.process.metric("duplicates_dropped")
    );
    assert_exactly_once(&out, &acked, Some(6_000));
}
