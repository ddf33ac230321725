//! Control records are authenticated. Someone who can produce to `evd.acks` but holds
//! no key (or only another agent's) cannot make an agent free its spool: here the
//! agent cannot reach Kafka to produce at all, so every batch it sealed is still only
//! in its spool when the forged acks arrive, and freeing any of them would lose
//! acked events.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tests::MockBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::oracle::send_ids;

/// An `EVDA` ack in the unauthenticated version 2 layout (`docs/wire-format.md` §2):
/// everything a forger needs is on the wire (agent id, spool id, seqs).
fn unauthenticated_ack(agent_id: &str, spool_id: u64, first: u64, last: u64) -> Vec<u8> {
    let mut out = b"EVDA".to_vec();
    out.push(2);
    out.push(agent_id.len() as u8);
    out.extend_from_slice(agent_id.as_bytes());
    out.extend_from_slice(&spool_id.to_le_bytes());
    out.extend_from_slice(&1_795_257_000_000i64.to_le_bytes());
    out.extend_from_slice(&6u16.to_le_bytes());
    out.extend_from_slice(b"forged");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&last.to_le_bytes());
    out
}

/// The same ack, version 3, signed with a key that is not the agent's.
fn ack_signed_by_a_stranger(agent_id: &str, spool_id: u64, first: u64, last: u64) -> Vec<u8> {
    let mut out = unauthenticated_ack(agent_id, spool_id, first, last);
    out[4] = 3;
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&[0x5a; 32]);
    out
}

fn spool_id_from_log(log: &str) -> u64 {
    let at = log
        .find("is incarnation ")
        .expect("the agent logs its spool id");
    let hex = &log[at + "is incarnation ".len()..][..16];
    u64::from_str_radix(hex, 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ack_frees_nothing() {
    let mock = MockBroker::start(1).unwrap();
    mock.create_pipeline_topics(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Producing goes to a port nobody listens on; the acks consumer reads the broker.
    let nowhere = format!("127.0.0.1:{}", tests::free_port());
    let opts = AgentOptions {
        extra: format!(
            "[kafka.consumer]\n\"bootstrap.servers\" = \"{}\"\n",
            mock.bootstrap()
        ),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start(dir.path(), "host-f", &nowhere, opts).unwrap();
    let acked = send_ids(&agent.socket(), 0..2_000).await.unwrap();
    assert_eq!(acked.len(), 2_000);
    let mut sealed = 0;
    for _ in 0..100 {
        sealed = agent.metric("spool_unacked_batches").unwrap_or(0);
        if sealed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sealed > 0, "the agent sealed its batches");
    let spool_id = spool_id_from_log(&agent.log_tail());

    let producer: FutureProducer = tests::kafka::client_config(mock.bootstrap())
        .create()
        .unwrap();
    for forged in [
        unauthenticated_ack("host-f", spool_id, 1, 1 << 62),
        ack_signed_by_a_stranger("host-f", spool_id, 1, 1 << 62),
    ] {
        producer
            .send(
                FutureRecord::to("evd.acks").key("host-f").payload(&forged),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    // The agent reads acks continuously; give it ample time to (wrongly) act on them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(agent.metric("batches_acked"), Some(0));
    assert_eq!(
        agent.metric("spool_unacked_batches"),
        Some(sealed),
        "no sealed batch was freed"
    );
    assert!(
        agent.metric("acks_unauthenticated").unwrap_or(0) >= 2,
        "forged acks are counted: {}",
        agent.log_tail()
    );
}
