//! The pipeline over TLS: agent → TLS front (stunnel) → tansu → consumer → Parquet,
//! every client verifying the broker's certificate against a CA of the test's own,
//! configured only through each role's shared `[kafka.options]` table. A plaintext
//! client is refused by the same front, so the test cannot pass by skipping TLS.

use std::time::Duration;

use tests::RealBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::consumer_proc::{
    ConsumerProcess, DEFAULT_KAFKA_CONSUMER, assert_exactly_once, wait_drained,
};
use tests::oracle::{create_pipeline_topics_with, send_ids};
use tests::tls_front::TlsFront;

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
    let consumer = ConsumerProcess::start_tuned(
        &dir.path().join("consumer"),
        "c1",
        &front.bootstrap(),
        &format!("file://{}", out.display()),
        &out,
        1_000,
        &[],
        &format!("consumer = {DEFAULT_KAFKA_CONSUMER}\noptions = {options}"),
    )
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
    let secs = wait_drained(&[&agent], &consumer.process, Duration::from_secs(120)).await;
    println!("over TLS: 5000 events acked, drained {secs:.1}s after the last ack");
    assert_exactly_once(&out, &acked, Some(5_000));
}
