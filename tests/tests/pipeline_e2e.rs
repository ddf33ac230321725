//! Agent → real broker → consumer → Parquet, read back with DuckDB: every acked id
//! exactly once, typed columns, rows per (type, hour) as sent; the spool drains.

use std::time::Duration;

use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::bed::TestBed;
use tests::consumer_proc::{
    ConsumerOptions, assert_exactly_once, ddl_read_back, wait_drained, wait_settled,
};
use tests::oracle::send_ids;

fn events() -> u64 {
    std::env::var("EVD_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_lands_in_parquet_exactly_once() {
    let bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .agent("host-a", AgentOptions::default())
        .start()
        .unwrap();
    let (agent, consumer, out) = (bed.agent(), bed.consumer(), bed.out());

    let total = events();
    let acked = send_all(agent, 0..total).await;
    assert_eq!(acked.len() as u64, total);
    // Drain: the spool empties once the consumer has committed and acked everything.
    let secs = wait_drained(&[agent], &consumer.process, Duration::from_secs(180)).await;
    println!("drained {secs:.1}s after the last ack");

    let back = assert_exactly_once(&out, &acked, Some(total));
    let per_type: u64 = back.rows_per_type_hour.values().sum();
    assert_eq!(per_type, total);
    for ty in tests::oracle::TYPES {
        let n: u64 = back
            .rows_per_type_hour
            .iter()
            .filter(|((t, _), _)| *t == ty)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(n, total / 5, "{ty}");
    }
    // Typed columns, as the registry declares them.
    let pv = &back.column_types["PageView"];
    assert_eq!(pv["received_at"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(pv["ts"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(
        pv["event_seq"], "BIGINT",
        "signed: Spark and Athena read it"
    );
    assert_eq!(pv["batch_seq"], "BIGINT");
    assert_eq!(pv["load_ms"], "BIGINT");
    assert_eq!(pv["user_id"], "VARCHAR");
    assert_eq!(
        back.column_types["SearchViewResponse"]["latency_ms"],
        "DOUBLE"
    );
    assert_eq!(back.column_types["EndSong"]["offline"], "BOOLEAN");
    // `evd schema ddl` defines a table DuckDB reads the same rows through.
    let (rows, types) = ddl_read_back(&out, "PageView").unwrap();
    assert_eq!(rows, total / 5, "PageView rows through the DDL's view");
    assert_eq!(types["batch_seq"], "BIGINT");
    assert_eq!(types["date"], "DATE");
    assert_eq!(types["hour"], "INTEGER");
    assert_eq!(
        back.column_types["EndSong"]["started_at"],
        "TIMESTAMP WITH TIME ZONE"
    );
}

/// Sends `ids` from 4 clients and returns what was acked.
async fn send_all(agent: &AgentProcess, ids: std::ops::Range<u64>) -> Vec<u64> {
    let mut handles = Vec::new();
    for c in 0..4 {
        let socket = agent.socket();
        let ids = ids.clone();
        handles.push(tokio::spawn(async move {
            send_ids(&socket, ids.filter(move |i| i % 4 == c))
                .await
                .unwrap()
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    acked
}

/// F6: 30% of acks are lost on the way back: agents retransmit, the ledger drops the
/// copies (and acks them again), the spool drains, nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_of_acks_dropped_no_duplicates_and_the_spool_drains() {
    let opts = AgentOptions {
        retransmit_after_ms: 1_500,
        env: vec![("EVD_TEST_DROP_ACKS_PERCENT".into(), "30".into())],
        ..AgentOptions::default()
    };
    let bed = TestBed::builder()
        .consumer(ConsumerOptions::new("c1", 200))
        .agent("host-d", opts)
        .start()
        .unwrap();
    let (agent, consumer, out) = (bed.agent(), bed.consumer(), bed.out());
    // Rounds with pauses: many flushes, so many ack messages for the fault to hit.
    let mut acked = Vec::new();
    let round = events() / 100;
    for r in 0..10 {
        acked.extend(send_all(agent, r * round..(r + 1) * round).await);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    wait_drained(&[agent], &consumer.process, Duration::from_secs(180)).await;
    let retransmitted = agent.metric("batches_retransmitted").unwrap();
    let dropped = consumer.process.metric("duplicates_dropped").unwrap();
    println!("retransmitted {retransmitted} batches; consumer dropped {dropped} duplicates");
    assert!(
        retransmitted > 0 && dropped > 0,
        "the fault must have happened"
    );
    assert_exactly_once(&out, &acked, None);
}

/// Three hours of receive time (the agent's clock is moved): rows land in the hour
/// they were received in, with the counts that were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hours_of_receive_time_become_three_hour_buckets() {
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::new("c1", 500))
        .start()
        .unwrap();
    let clock_file = bed.dir.path().join("clock-offset-ms");
    std::fs::write(&clock_file, "0").unwrap();
    let opts = AgentOptions {
        env: vec![(
            "EVD_TEST_CLOCK_OFFSET_FILE".into(),
            clock_file.display().to_string(),
        )],
        ..AgentOptions::default()
    };
    bed.add_agent("host-3h", opts).unwrap();
    let (agent, consumer, out) = (bed.agent(), bed.consumer(), bed.out());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base_hour = evd_schemas::Hour::from_unix_ms(now_ms).next().next();
    let per_hour = events() / 25;
    let mut acked = Vec::new();
    for h in 0..3u32 {
        let hour = evd_schemas::Hour(base_hour.0 + h);
        // Ten minutes into the target hour.
        let target = hour.start_ms() + 600_000;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        std::fs::write(&clock_file, (target - now).to_string()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let from = u64::from(h) * per_hour;
        acked.extend(send_all(agent, from..from + per_hour).await);
    }
    wait_drained(&[agent], &consumer.process, Duration::from_secs(120)).await;
    let back = assert_exactly_once(&out, &acked, None);
    for h in 0..3u32 {
        let hour = evd_schemas::Hour(base_hour.0 + h).to_string();
        let rows: u64 = back
            .rows_per_type_hour
            .iter()
            .filter(|((_, hr), _)| *hr == hour)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(rows, per_hour, "hour {hour}: {:?}", back.rows_per_type_hour);
    }
}

/// The same pipeline with the output on S3 (a local moto server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_output_path_works_end_to_end() {
    let moto = tests::moto::MotoServer::start().unwrap();
    moto.create_bucket("evd-test").unwrap();
    let opts = ConsumerOptions {
        env: moto.env(),
        output_url: Some("s3://evd-test/buckets".into()),
        ..ConsumerOptions::new("c1", 500)
    };
    let bed = TestBed::builder()
        .consumer(opts)
        .agent("host-s3", AgentOptions::default())
        .start()
        .unwrap();
    let (agent, consumer) = (bed.agent(), bed.consumer());
    let acked = send_all(agent, 0..events() / 25).await;
    // Settled, not just drained: an empty spool before the first seal says nothing.
    wait_settled(agent, &consumer.process, Duration::from_secs(120)).await;
    let local = bed.dir.path().join("from-s3");
    moto.download("evd-test", "buckets", &local).unwrap();
    assert_exactly_once(&local, &acked, None);
}
