//! The agent against a real broker: every acked event reaches Kafka; acks drain it.

use std::time::{Duration, Instant};

use evd_schemas::wire::audit::{AuditBody, AuditRecord};
use tests::RealBroker;
use tests::agent_proc::{AgentOptions, AgentProcess, test_master_keyring};
use tests::bed::TestBed;
use tests::oracle::{TestReader, create_pipeline_topics, send_ids};

fn events() -> u64 {
    std::env::var("EVD_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_from_8_clients_reaches_kafka_and_the_spool_drains() {
    let bed = TestBed::builder()
        .agent("host-a", AgentOptions::default())
        .start()
        .unwrap();
    let agent = bed.agent();

    let total = events();
    let clients = 8;
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let socket = agent.socket();
        handles.push(tokio::spawn(async move {
            send_ids(&socket, (0..total).filter(move |id| id % clients == c))
                .await
                .unwrap()
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    let send_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        acked.len() as u64,
        total,
        "every valid event is acked\n{}",
        agent.log_tail()
    );

    let bootstrap = bed.bootstrap();
    let (missing, reader) = tokio::task::spawn_blocking(move || {
        let mut reader = TestReader::new(&bootstrap, test_master_keyring(), true).unwrap();
        let missing = reader.wait_for(&acked, Duration::from_secs(180));
        (missing, reader)
    })
    .await
    .unwrap();
    println!(
        "{total} events from {clients} clients acked in {send_secs:.1}s ({:.0} ev/s); {} batches read",
        total as f64 / send_secs,
        reader.batches.len()
    );
    assert!(
        missing.is_empty(),
        "{} acked events never reached Kafka, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        agent.log_tail()
    );
    assert_eq!(reader.bad_batches, 0);

    // The audit topic announces every batch (idempotent per batch seq) and carries
    // heartbeats.
    let bootstrap = bed.bootstrap();
    let audit = tokio::task::spawn_blocking(move || {
        tests::kafka::consume_n(&bootstrap, "evd.audit", usize::MAX, Duration::from_secs(5))
            .unwrap()
    })
    .await
    .unwrap();
    let mut announced = std::collections::BTreeMap::new();
    let mut heartbeats = 0;
    for bytes in &audit {
        let record = AuditRecord::decode(bytes, &test_master_keyring()).unwrap();
        assert_eq!(record.agent_id, "host-a");
        match record.body {
            AuditBody::Announcement(a) => {
                announced.insert(a.batch_seq, a.event_count);
            }
            AuditBody::Heartbeat(_) => heartbeats += 1,
        }
    }
    assert_eq!(
        announced.values().map(|&n| u64::from(n)).sum::<u64>(),
        total,
        "announced events"
    );
    assert_eq!(
        announced.len(),
        reader.batches.len(),
        "one announcement per batch"
    );
    assert!(heartbeats >= 1, "heartbeats on the audit topic");

    // The reader acked every batch like a consumer: the spool must drain.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let unacked = agent.metric("spool_unacked_batches");
        if unacked == Some(0) && agent.metric("spool_segments") == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spool did not drain: unacked {unacked:?}\n{}",
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_cleanly_and_nothing_acked_is_lost() {
    let broker = RealBroker::start().unwrap();
    create_pipeline_topics(&broker.bootstrap(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start(
        dir.path(),
        "host-t",
        &broker.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    let acked = send_ids(&agent.socket(), 0..5_000).await.unwrap();
    assert_eq!(acked.len(), 5_000);
    assert!(
        agent.terminate().unwrap(),
        "SIGTERM must exit 0\n{}",
        agent.log_tail()
    );
    assert!(
        !agent.socket().exists(),
        "the socket file is removed on exit"
    );
    // Whatever was still unacked at exit is resent by the next start.
    let agent = AgentProcess::start(
        dir.path(),
        "host-t",
        &broker.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    let bootstrap = broker.bootstrap();
    let missing = tokio::task::spawn_blocking(move || {
        let mut reader = TestReader::new(&bootstrap, test_master_keyring(), false).unwrap();
        reader.wait_for(&acked, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "{} events lost across SIGTERM\n{}",
        missing.len(),
        agent.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_registry() {
    let broker = RealBroker::start().unwrap();
    create_pipeline_topics(&broker.bootstrap(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    std::fs::create_dir_all(&registry).unwrap();
    for entry in std::fs::read_dir(tests::agent_proc::example_registry_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, registry.join(path.file_name().unwrap())).unwrap();
    }
    let opts = AgentOptions {
        registry_dir: Some(registry.clone()),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start(
        &dir.path().join("agent"),
        "host-h",
        &broker.bootstrap(),
        opts,
    )
    .unwrap();
    let line = r#"{"type":"Checkout","ts":1,"order_id":"o1"}"#;
    let send = |socket: std::path::PathBuf| async move {
        let mut out = Vec::new();
        evd_producer::client::send_lines(
            &socket,
            std::io::Cursor::new(format!("{line}\n").into_bytes()),
            |_, r| out.push(r),
        )
        .await
        .unwrap();
        out
    };
    let before = send(agent.socket()).await;
    assert!(
        matches!(&before[0], evd_producer::client::Response::Error { error, .. } if error.starts_with("unknown_type")),
        "{before:?}"
    );
    std::fs::write(
        registry.join("checkout.toml"),
        "name = \"Checkout\"\nversion = 1\nowner = \"shop\"\ntier = \"high\"\n[[fields]]\nname = \"order_id\"\ntype = \"string\"\nrequired = true\n",
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = send(agent.socket()).await;
        if matches!(after[0], evd_producer::client::Response::Ok(_)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not load the new type: {after:?}\n{}",
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
