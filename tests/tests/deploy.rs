//! What an operator sees when deploying: health and readiness endpoints, a metrics
//! address already in use stops start-up, and a missing acks topic is said in the log
//! and in a metric rather than waited on silently.

use std::time::{Duration, Instant};

use tests::MockBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::consumer_proc::ConsumerProcess;
use tests::process::EvdProcess;

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_role_answers_health_and_readiness() {
    let broker = MockBroker::start(1).unwrap();
    broker.create_pipeline_topics(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        &dir.path().join("agent"),
        "host-h",
        broker.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    // The agent is started once its socket accepts: it is ready.
    assert_eq!(agent.process.http_get("/healthz").unwrap().0, 200);
    let (status, body) = agent.process.http_get("/readyz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(agent.process.http_get("/nope").unwrap().0, 404);
    assert_eq!(agent.metric("ready"), Some(1));

    let consumer = ConsumerProcess::start_in(dir.path(), broker.bootstrap()).unwrap();
    assert_eq!(consumer.process.http_get("/healthz").unwrap().0, 200);
    wait_for("the consumer ready", Duration::from_secs(30), || {
        consumer
            .process
            .http_get("/readyz")
            .is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(consumer.process.metric("ready"), Some(1));
}

/// A second agent configured with the first one's metrics address exits non-zero at
/// start, naming the address, instead of running without its endpoints.
#[test]
fn a_metrics_address_in_use_stops_start_up() {
    let broker = MockBroker::start(1).unwrap();
    broker.create_pipeline_topics(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = AgentProcess::start(
        &dir.path().join("first"),
        "host-b",
        broker.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    for file in ["agent.toml", "agent-keys.toml"] {
        std::fs::copy(dir.path().join("first").join(file), second.join(file)).unwrap();
    }
    let mut process = EvdProcess::new(
        "agent",
        &second,
        second.join("agent.toml"),
        first.process.metrics_addr.clone(),
    );
    let err = process.spawn(|_| false).unwrap_err().to_string();
    assert!(
        err.contains("exited with exit status: 1") && err.contains("Address already in use"),
        "{err}"
    );
    assert!(err.contains(&first.process.metrics_addr), "{err}");
}

/// With no acks topic (auto-creation off, nobody provisioned it) the agent says so in
/// its log and its `acks_topic_missing` gauge, and it still takes events.
#[test]
fn a_missing_acks_topic_is_logged_and_counted() {
    let broker = MockBroker::start(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        &dir.path().join("agent"),
        "host-m",
        broker.bootstrap(),
        AgentOptions::default(),
    )
    .unwrap();
    wait_for("the gauge", Duration::from_secs(30), || {
        agent.metric("acks_topic_missing") == Some(1)
    });
    let log = agent.log_tail();
    assert!(
        log.contains("evd.acks") && log.contains("spool cannot free"),
        "{log}"
    );
}
