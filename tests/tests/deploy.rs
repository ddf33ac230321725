//! What an operator sees when deploying: health and readiness endpoints, a metrics
//! address already in use stops start-up, and a missing acks topic is said in the log
//! and in a metric rather than waited on silently.

use std::time::{Duration, Instant};

use tests::MockBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::bed::TestBed;
use tests::consumer_proc::ConsumerOptions;
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
    let mut bed = TestBed::builder()
        .mock(1)
        .partitions(2)
        .agent("host-h", AgentOptions::default())
        .start()
        .unwrap();
    let agent = bed.agent();
    // The agent is started once its socket accepts: it is ready.
    assert_eq!(agent.process.http_get("/healthz").unwrap().0, 200);
    let (status, body) = agent.process.http_get("/readyz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(agent.process.http_get("/nope").unwrap().0, 404);
    assert_eq!(agent.metric("ready"), Some(1));

    let consumer = bed.add_consumer(ConsumerOptions::default()).unwrap();
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

/// `evd topics` against a real broker: `check` names what is missing and exits 1,
/// `create` makes the role's topics, then `check` passes and `create` again leaves
/// them as they are.
#[test]
fn topics_are_checked_and_created_from_a_role_config() {
    let broker = tests::RealBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("agent-keys.toml");
    std::fs::write(
        &keys,
        tests::agent_proc::test_master_keyring()
            .derive_agent_keyring("host-t")
            .to_toml(),
    )
    .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"host-t\"\nregistry_dir = \"{}\"\nkeyring_path = \"agent-keys.toml\"\n[socket]\npath = \"s.sock\"\n[spool]\ndir = \"spool\"\n[kafka]\nbootstrap_servers = \"{}\"\n",
            tests::agent_proc::example_registry_dir().display(),
            broker.bootstrap()
        ),
    )
    .unwrap();
    let topics = |action: &str| {
        let out = std::process::Command::new(tests::process::evd_binary())
            .args(["topics", action, "--config"])
            .arg(&config)
            .args(["--partitions", "2", "--replication", "1"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = topics("check");
    assert!(
        !ok && out.contains("MISSING evd.acks") && out.contains("MISSING evd.audit"),
        "{out}"
    );
    let (ok, out) = topics("plan");
    assert!(ok && out.contains("evd.events.PageView\t2\t1\t"), "{out}");
    let (ok, out) = topics("create");
    assert!(ok && out.contains("created evd.acks"), "{out}");
    let (ok, out) = topics("check");
    assert!(
        ok && out.contains("ok      evd.audit") && !out.contains("MISSING"),
        "{out}"
    );
    let (ok, out) = topics("create");
    assert!(ok && out.contains("exists  evd.acks"), "{out}");
}

/// `evd validate --connect` on a consumer config: a real S3 server (moto) passes the
/// store probe (create-only honoured); a missing topic is named; once the topics
/// exist it connects; a store that overwrites on create-only puts is refused.
#[test]
fn validate_connect_probes_the_store_and_the_cluster() {
    let broker = tests::RealBroker::start().unwrap();
    let moto = tests::moto::MotoServer::start().unwrap();
    moto.create_bucket("probe").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("master.toml"),
        tests::agent_proc::test_master_keyring().to_toml(),
    )
    .unwrap();
    let config = dir.path().join("consumer.toml");
    std::fs::write(
        &config,
        format!(
            "registry_dir = \"{}\"\nkeyring_path = \"master.toml\"\noutput_url = \"s3://probe/evd\"\n[kafka]\nbootstrap_servers = \"{}\"\nevent_types = [\"PageView\"]\n",
            tests::agent_proc::example_registry_dir().display(),
            broker.bootstrap()
        ),
    )
    .unwrap();
    let validate = |extra_env: &[(&str, &str)]| {
        let out = std::process::Command::new(tests::process::evd_binary())
            .args(["validate", "--connect"])
            .arg(&config)
            .envs(moto.env())
            .envs(extra_env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = validate(&[]);
    assert!(
        !ok && out.contains("refused (already exists): ok") && out.contains("evd.acks"),
        "{out}"
    );
    tests::kafka::create_topic(&broker.bootstrap(), "evd.acks", 1).unwrap();
    tests::kafka::create_topic(&broker.bootstrap(), "evd.events.PageView", 1).unwrap();
    let (ok, out) = validate(&[]);
    assert!(ok && out.contains("connected"), "{out}");
    let (ok, out) = validate(&[("EVD_TEST_STORE_FAULTS", "ignore_create_only=1")]);
    assert!(
        !ok && out.contains("does not honour create-only puts"),
        "{out}"
    );
}

/// `evd validate --connect` on a bridge reaches both clusters, also when the reverse
/// route (the one reading the central cluster) is off: a dead central is named.
#[test]
fn validate_connect_reaches_both_clusters_of_a_bridge() {
    let edge = tests::RealBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    let dead = format!("127.0.0.1:{}", tests::free_port());
    std::fs::write(
        &config,
        format!(
            "[edge]\nbootstrap_servers = \"{}\"\n[central]\nbootstrap_servers = \"{dead}\"\n[reverse]\nenabled = false\n",
            edge.bootstrap()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(tests::process::evd_binary())
        .args(["validate", "--connect"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("kafka edge: 1 broker(s) answer")
            && text.contains("central cluster"),
        "{text}"
    );
}
