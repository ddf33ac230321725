//! The pipeline over TLS: agent → TLS front (stunnel) → tansu → consumer → Parquet,
//! and the auditor reading the audit topic, every client verifying the broker's
//! certificate against a CA of the test's own, configured only through each role's
//! shared `[kafka.options]` table. A plaintext client is refused by the same front, so
//! the test cannot pass by skipping TLS. The run also shows the latency histograms
//! filling: client ack, Kafka produce, end-to-end ack, consumer flush.

use std::time::Duration;

use tests::RealBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::consumer_proc::{
    ConsumerOptions, ConsumerProcess, assert_exactly_once, group_settings_table, wait_settled,
};
use tests::oracle::{create_pipeline_topics_with, send_ids};
use tests::process::EvdProcess;
use tests::tls_front::TlsFront;

/// The auditor with only TLS options for Kafka; ready once it read the audit topic.
fn start_auditor(
    dir: &std::path::Path,
    bootstrap: &str,
    options: &str,
    out: &std::path::Path,
) -> EvdProcess {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("master.toml"),
        tests::agent_proc::test_master_keyring().to_toml(),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", tests::free_port());
    let config = dir.join("ops.toml");
    std::fs::write(
        &config,
        format!(
            "auditor_id = \"ops-tls\"\nregistry_dir = \"{}\"\nkeyring_path = \"master.toml\"\n\
             output_url = \"file://{}\"\nlisten = \"{listen}\"\nscan_interval_ms = 300\n\
             [kafka]\nbootstrap_servers = \"{bootstrap}\"\noptions = {options}\n",
            tests::agent_proc::example_registry_dir().display(),
            out.display()
        ),
    )
    .unwrap();
    let mut ops = EvdProcess::new("ops", dir, config, listen);
    ops.spawn(|p| {
        p.http_get("/readyz")
            .is_some_and(|(status, _)| status == 200)
    })
    .unwrap();
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_over_tls_with_verified_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let front_port = TlsFront::reserve_port();
    let broker = RealBroker::start_advertising(front_port).unwrap();
    let front = TlsFront::start(
        &dir.path().join("tls"),
        front_port,
        &broker.direct_bootstrap(),
    )
    .unwrap();
    let tls = |bootstrap: &str| {
        let mut cfg = tests::kafka::client_config(bootstrap);
        cfg.set("security.protocol", "SSL")
            .set("ssl.ca.location", front.ca().display().to_string());
        cfg
    };
    create_pipeline_topics_with(|| tls(&front.bootstrap()), 2).unwrap();
    // The front speaks only TLS: a plaintext client gets no metadata through it.
    assert!(
        !tests::kafka::metadata_answers(&front.bootstrap(), Duration::from_secs(3)),
        "the front answered plaintext"
    );

    let options = front.client_options_toml();
    let out = dir.path().join("out");
    let opts = ConsumerOptions {
        kafka: format!("consumer = {}\noptions = {options}", group_settings_table()),
        ..ConsumerOptions::default()
    };
    let consumer =
        ConsumerProcess::start(&dir.path().join("consumer"), &front.bootstrap(), &out, opts)
            .unwrap();
    let agent = AgentProcess::start(
        &dir.path().join("agent"),
        "host-tls",
        &front.bootstrap(),
        AgentOptions {
            extra: format!("options = {options}"),
            ..AgentOptions::default()
        },
    )
    .unwrap();

    let acked = send_ids(&agent.socket(), 0..5_000).await.unwrap();
    assert_eq!(acked.len(), 5_000);
    // `wait_settled`: right after the last ack no batch may be sealed yet, and an empty
    // spool then looks drained (seen once in CI: 0 rows, "drained 0.0 s" after).
    let sealed = wait_settled(&agent, &consumer.process, Duration::from_secs(120)).await;
    println!("over TLS: 5000 events acked, {sealed} batches sealed and acked end to end");
    assert_exactly_once(&out, &acked, Some(5_000));

    for (name, value) in [
        (
            "client_ack_seconds_count",
            agent.metric("client_ack_seconds_count"),
        ),
        (
            "kafka_produce_seconds_count",
            agent.metric("kafka_produce_seconds_count"),
        ),
        (
            "end_to_end_ack_seconds_count",
            agent.metric("end_to_end_ack_seconds_count"),
        ),
        (
            "flush_seconds_count",
            consumer.process.metric("flush_seconds_count"),
        ),
    ] {
        assert!(value.unwrap_or(0) > 0, "{name}: {value:?}");
    }

    // The auditor reads every batch's announcement over TLS too.
    let ops = start_auditor(&dir.path().join("ops"), &front.bootstrap(), &options, &out);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let sealed = agent.metric("batches_sealed").unwrap();
    while ops.metric("audit_records").unwrap_or(0) < sealed {
        assert!(
            std::time::Instant::now() < deadline,
            "the auditor read {:?} audit records of {sealed} batches over TLS",
            ops.metric("audit_records")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
