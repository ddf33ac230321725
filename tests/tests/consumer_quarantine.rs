//! Bad batches are quarantined with their reason and raw bytes; the rest of the
//! partition is still delivered. Once the missing key is added, `evd quarantine
//! replay` brings the unknown-key batch back, and however often it runs (even twice
//! at once) its event is delivered once; a tampered batch stays where it is.

use std::time::{Duration, Instant};

use evd_schemas::wire::batch::{self, BatchMeta};
use evd_schemas::wire::record::put_record;
use evd_schemas::{Hour, Key, MasterKeyring};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tests::agent_proc::test_master_keyring;
use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, read_back};
use tests::oracle::{event_line, topic};

fn sealed(keys: &MasterKeyring, agent: &str, seq: u64, lines: &[String]) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut payload = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        put_record(
            &mut payload,
            seq * 1000 + i as u64,
            now_ms * 1000,
            line.as_bytes(),
        );
    }
    let meta = BatchMeta {
        agent_id: agent.into(),
        spool_id: evd_schemas::SpoolId(1),
        batch_seq: seq,
        event_type: "PageView".into(),
        bucket_hour: Hour::from_unix_ms(now_ms),
        created_at_ms: now_ms,
        event_count: lines.len() as u32,
    };
    batch::seal(&keys.derive_agent_keyring(agent), &meta, &payload, 1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_quarantined_and_the_rest_delivered() {
    let mut bed = TestBed::builder()
        .partitions(1)
        .consumer(ConsumerOptions::new("c1", 300))
        .start()
        .unwrap();
    let (consumer, out) = (bed.consumer(), bed.out());
    let keys = test_master_keyring();
    let good = |seq: u64, id: u64| sealed(&keys, "host-q", seq, &[event_line(id * 5)]);

    let mut tampered = good(2, 2);
    let n = tampered.len();
    tampered[n - 20] ^= 1;
    let unknown_key = sealed(
        &MasterKeyring::new([(9, Key([9; 32]))]),
        "host-q",
        3,
        &[event_line(15)],
    );
    // Agent B's batch with its header rewritten to claim agent A ("host-q" → "host-z").
    let mut swapped = sealed(&keys, "host-z", 4, &[event_line(20)]);
    let at = swapped.windows(6).position(|w| w == b"host-z").unwrap();
    swapped[at..at + 6].copy_from_slice(b"host-q");
    // An authentic batch where one event violates the schema (user_id must be a string).
    let bad_event = r#"{"type":"PageView","ts":1,"user_id":42,"url":"/x"}"#.to_string();
    let mixed = sealed(&keys, "host-q", 5, &[event_line(25), bad_event]);

    let producer: FutureProducer = tests::kafka::client_config(&bed.bootstrap())
        .create()
        .unwrap();
    let t = topic("PageView");
    // The tampered and unknown-key batches come twice, as an agent's retransmits do:
    // quarantine keeps one copy of each.
    for (i, bytes) in [
        good(1, 1),
        tampered.clone(),
        unknown_key.clone(),
        swapped,
        tampered,
        mixed,
        unknown_key,
        good(6, 6),
    ]
    .iter()
    .enumerate()
    {
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(&t).key(&key).payload(bytes),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let started = Instant::now();
    while consumer.process.metric("events_written") != Some(3) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            consumer.process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = read_back(&out).unwrap();
    assert_eq!(
        back.ids.keys().copied().collect::<Vec<_>>(),
        vec![5, 25, 30],
        "the good events around the bad ones"
    );
    let q = out.join("_quarantine");
    let bad_tag: Vec<_> = std::fs::read_dir(q.join("bad_tag"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        bad_tag.len(),
        4,
        "tampered + swapped: .bin and .json each: {bad_tag:?}"
    );
    assert_eq!(std::fs::read_dir(q.join("unknown_key")).unwrap().count(), 2);
    let note = std::fs::read_dir(q.join("unknown_key"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    assert!(
        std::fs::read_to_string(note)
            .unwrap()
            .contains("unknown key id 9")
    );
    let schema: String = std::fs::read_dir(q.join("schema"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        schema.contains("field `user_id`: expected a string, got number 42"),
        "{schema}"
    );
    assert_eq!(consumer.process.metric("quarantined_batches"), Some(3));
    assert_eq!(consumer.process.metric("quarantined_events"), Some(1));

    // The operator adds key 9 to the consumers' keyring and replays.
    let fixed = MasterKeyring::new([(1, Key([0x5a; 32])), (9, Key([9; 32]))]);
    let consumer = &mut bed.consumers[0];
    std::fs::write(
        consumer.process.dir.join("master-keys.toml"),
        fixed.to_toml(),
    )
    .unwrap();
    consumer.restart().unwrap();
    let config = consumer.process.config.clone();
    let unknown_key_bin = std::fs::read_dir(q.join("unknown_key"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let name = format!(
        "_quarantine/unknown_key/{}",
        unknown_key_bin.file_name().unwrap().to_string_lossy()
    );
    let replay = |name: String, config: std::path::PathBuf| {
        std::thread::spawn(move || {
            std::process::Command::new(tests::process::evd_binary())
                .args(["quarantine", "--config"])
                .arg(&config)
                .args(["replay", &name])
                .output()
                .unwrap()
        })
    };
    // Twice at once (the marker cannot stop both: the consumers' ledger does), then
    // again (the marker says it was replayed).
    let (a, b) = (
        replay(name.clone(), config.clone()),
        replay(name.clone(), config.clone()),
    );
    for run in [
        a.join().unwrap(),
        b.join().unwrap(),
        replay(name.clone(), config.clone()).join().unwrap(),
    ] {
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let started = Instant::now();
    while !read_back(&out).unwrap().ids.contains_key(&15) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replayed event never landed: {}",
            bed.consumers[0].process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both copies were read by now or soon: give the second a flush to land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let back = read_back(&out).unwrap();
    assert_eq!(back.ids[&15], 1, "the replayed event exactly once");
    // The tampered batch still does not open: replay says so and exits 1.
    let tampered_bin = std::fs::read_dir(q.join("bad_tag"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let run = replay(
        format!(
            "_quarantine/bad_tag/{}",
            tampered_bin.file_name().unwrap().to_string_lossy()
        ),
        config,
    )
    .join()
    .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stdout).contains("still does not open"));
}
