//! Agent → real broker → consumer → Parquet, read back with DuckDB: every acked id
//! exactly once, typed columns, rows per (type, hour) as sent; the spool drains.

use std::time::{Duration, Instant};

use tests::RealBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::consumer_proc::{ConsumerProcess, files_not_in_manifests, read_back};
use tests::oracle::{create_pipeline_topics, send_ids};

fn events() -> u64 {
    std::env::var("EVD_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_lands_in_parquet_exactly_once() {
    let broker = RealBroker::start().unwrap();
    create_pipeline_topics(&broker.bootstrap(), 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let consumer = ConsumerProcess::start(
        &dir.path().join("consumer"),
        "c1",
        &broker.bootstrap(),
        &out,
        1_000,
        &[],
    )
    .unwrap();
    let agent = AgentProcess::start(
        &dir.path().join("agent"),
        "host-a",
        &broker.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();

    let total = events();
    let mut handles = Vec::new();
    for c in 0..4 {
        let socket = agent.socket();
        handles.push(tokio::spawn(async move {
            send_ids(&socket, (0..total).filter(move |i| i % 4 == c))
                .await
                .unwrap()
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    assert_eq!(acked.len() as u64, total);

    // Drain: the spool empties once the consumer has committed and acked everything.
    let started = Instant::now();
    while agent.metric("spool_unacked_batches") != Some(0)
        || agent.metric("batches_sealed") == Some(0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "spool did not drain\nagent:\n{}\nconsumer:\n{}",
            agent.log_tail(),
            consumer.process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "drained {:.1}s after the last ack",
        started.elapsed().as_secs_f64()
    );

    let back = read_back(&out).unwrap();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| !back.ids.contains_key(id))
        .collect();
    let dup: Vec<u64> = back
        .ids
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let phantom = back.ids.keys().filter(|id| **id >= total).count();
    println!(
        "{} acked, {} rows read back, lost {}, dup {}, phantom {phantom}, {} files",
        acked.len(),
        back.ids.values().sum::<u32>(),
        lost.len(),
        dup.len(),
        back.files.len()
    );
    assert!(lost.is_empty(), "lost {:?}", &lost[..lost.len().min(10)]);
    assert!(dup.is_empty(), "duplicated {:?}", &dup[..dup.len().min(10)]);
    assert_eq!(phantom, 0);
    let per_type: u64 = back.rows_per_type_hour.values().sum();
    assert_eq!(per_type, total);
    for ty in ["PageView", "SearchViewResponse", "EndSong", "AdImpression"] {
        let n: u64 = back
            .rows_per_type_hour
            .iter()
            .filter(|((t, _), _)| t == ty)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(n, total / 4, "{ty}");
    }
    assert_eq!(
        files_not_in_manifests(&out, &back.files).unwrap(),
        Vec::<String>::new()
    );
}
