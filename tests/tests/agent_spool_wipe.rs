//! A spool wiped and re-created under the same agent id (a replaced disk, an
//! ephemeral container volume, `rm -rf` of the spool) starts again at batch seq 1.
//! Its batches are new data, not duplicates of the first spool's batches: before the
//! spool incarnation existed, the consumer dropped them as duplicates, acked them, and
//! the agent freed them — every event acked after the wipe was lost, every metric green.

use std::time::Duration;

use tests::RealBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::consumer_proc::{ConsumerProcess, assert_exactly_once, wait_settled};
use tests::oracle::{create_pipeline_topics, send_ids};

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_wiped_under_the_same_agent_id_loses_nothing() {
    let broker = RealBroker::start().unwrap();
    create_pipeline_topics(&broker.bootstrap(), 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let consumer = ConsumerProcess::start_in(dir.path(), &broker.bootstrap()).unwrap();
    let mut agent = AgentProcess::start(
        &dir.path().join("agent"),
        "host-w",
        &broker.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
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
