//! `evd quarantine replay`: a consumer whose registry requires `referrer` quarantines
//! the PageView events without it (the rest of their batch is delivered). Replayed
//! against the same registry, nothing is written; once the registry is fixed, the
//! events are written exactly once however often and however concurrently the replay
//! runs, with the columns the consumer would have written, and the auditor counts
//! them as delivered instead of quarantined.

mod support;

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use evd_consumer::commit::Output;
use evd_consumer::flush::{DeliveryFaults, FlushBuilder};
use evd_consumer::ledger::Ledger;
use evd_consumer::parquet_options::ParquetOptions;
use evd_consumer::replay::{ReplayError, replay_events};
use evd_ops::auditor::{Seen, scan};
use evd_schemas::keys::{Key, MasterKeyring};
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord};
use evd_schemas::wire::batch::{self, BatchMeta};
use evd_schemas::wire::record::put_record;
use evd_schemas::{Hour, Registry, SpoolId};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const H: Hour = Hour(493_127);
const SPOOL: SpoolId = SpoolId(0x9);
const EVENTS: u64 = 10;

/// The example registry with `referrer` required in PageView.
fn strict_registry(dir: &Path) -> Registry {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let entry = entry.unwrap();
        let mut text = std::fs::read_to_string(entry.path()).unwrap();
        if entry.file_name() == "page_view.toml" {
            text = text.replace(
                "name = \"referrer\"\ntype = \"string\"\n",
                "name = \"referrer\"\ntype = \"string\"\nrequired = true\n",
            );
        }
        std::fs::write(dir.join(entry.file_name()), text).unwrap();
    }
    evd_ops::load::registry_dir(dir).unwrap()
}

/// One consumer flush of batch 3 of `host-q`: even events carry a referrer.
async fn flush_with_quarantine(
    output: &Output,
    keys: &MasterKeyring,
    registry: &Registry,
) -> String {
    let mut payload = Vec::new();
    for seq in 1..=EVENTS {
        let referrer = if seq % 2 == 0 {
            ",\"referrer\":\"/\""
        } else {
            ""
        };
        let body = format!(
            "{{\"type\":\"PageView\",\"ts\":1795000000000,\"user_id\":\"u{seq}\",\"url\":\"/p\"{referrer}}}"
        );
        put_record(
            &mut payload,
            seq,
            H.start_ms() * 1000 + seq as i64,
            body.as_bytes(),
        );
    }
    let meta = BatchMeta {
        agent_id: "host-q".into(),
        spool_id: SPOOL,
        batch_seq: 3,
        event_type: "PageView".into(),
        bucket_hour: H,
        created_at_ms: H.start_ms(),
        event_count: EVENTS as u32,
    };
    let sealed = batch::seal(&keys.derive_agent_keyring("host-q"), &meta, &payload, 1).unwrap();
    let opened = batch::open(keys, &sealed).unwrap();
    let mut flush = FlushBuilder::new("c1", H.start_ms(), DeliveryFaults::default());
    flush.note_message(
        ("evd.events.PageView".into(), 0),
        0,
        std::time::Instant::now(),
    );
    flush.offer(&Ledger::default(), registry, &opened);
    let mut sealed = flush
        .seal(H.start_ms() + 60_000, evd_consumer::parquet_out::encode)
        .unwrap()
        .unwrap();
    let (doc, bytes) = sealed.rejected.clone().expect("events were quarantined");
    output.put(&doc, bytes).await.unwrap();
    output
        .commit(&mut sealed.manifest, sealed.staged.clone())
        .await
        .unwrap();
    doc
}

/// (batch_seq, event_seq) of every PageView row in the output.
fn rows(dir: &Path) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("PageView")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let file = std::fs::File::open(&path).unwrap();
                for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
                {
                    let batch = batch.unwrap();
                    let col = |n: &str| {
                        batch
                            .column_by_name(n)
                            .unwrap()
                            .as_primitive::<Int64Type>()
                            .clone()
                    };
                    let (b, e) = (col("batch_seq"), col("event_seq"));
                    out.extend((0..batch.num_rows()).map(|i| (b.value(i), e.value(i))));
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_writes_each_quarantined_event_once_and_the_auditor_counts_it_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let strict_dir = tempfile::tempdir().unwrap();
    let output = support::output(dir.path());
    let keys = MasterKeyring::new([(1, Key([0x33; 32]))]);
    let strict = strict_registry(strict_dir.path());
    let fixed = support::registry();
    let doc = flush_with_quarantine(&output, &keys, &strict).await;
    assert_eq!(rows(dir.path()).len() as u64, EVENTS / 2);

    let config = support::config("");
    let shared = support::shared(H.start_ms() + 30 * 60_000, &config);
    shared.state().on_audit(&AuditRecord {
        agent_id: "host-q".into(),
        spool_id: SPOOL,
        at_ms: H.start_ms() + 1_000,
        body: AuditBody::Announcement(Announcement {
            event_type: "PageView".into(),
            bucket_hour: H,
            batch_seq: 3,
            event_count: EVENTS as u32,
        }),
    });
    let mut seen = Seen::default();
    scan(&output, &shared, &mut seen).await.unwrap();
    let report = |shared: &evd_ops::auditor::Shared| {
        shared
            .state()
            .report("PageView", H, H.start_ms(), &shared.policy)
    };
    let before = report(&shared);
    assert_eq!(
        (before.delivered, before.quarantined, before.missing),
        (EVENTS / 2, EVENTS / 2, 0)
    );

    // Against the registry that refused them: nothing is written.
    let opts = ParquetOptions::default();
    let err = replay_events(&output, &keys, &strict, &opts, &doc)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ReplayError::StillInvalid { failures, .. } if failures.len() == 5),
        "{err}"
    );
    assert_eq!(rows(dir.path()).len() as u64, EVENTS / 2);
    // A document no committed manifest names is not replayed.
    output
        .put("_quarantine/schema/orphan.jsonl", bytes::Bytes::new())
        .await
        .unwrap();
    let err = replay_events(
        &output,
        &keys,
        &fixed,
        &opts,
        "_quarantine/schema/orphan.jsonl",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ReplayError::NotCommitted(_)), "{err}");

    // Fixed: once, again, and twice at the same time.
    let first = replay_events(&output, &keys, &fixed, &opts, &doc)
        .await
        .unwrap();
    assert_eq!(first.events, EVENTS / 2);
    replay_events(&output, &keys, &fixed, &opts, &doc)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        replay_events(&output, &keys, &fixed, &opts, &doc),
        replay_events(&output, &keys, &fixed, &opts, &doc)
    );
    a.unwrap();
    b.unwrap();
    let expected: Vec<(i64, i64)> = (1..=EVENTS as i64).map(|e| (3, e)).collect();
    assert_eq!(rows(dir.path()), expected, "every event exactly once");

    cli_lists_and_shows(dir.path(), &doc);

    scan(&output, &shared, &mut seen).await.unwrap();
    let after = report(&shared);
    assert_eq!(
        (
            after.delivered,
            after.quarantined,
            after.missing,
            after.duplicates
        ),
        (EVENTS, 0, 0, 0),
        "replayed events count as delivered"
    );
}

/// `evd quarantine list` and `show` on the same output, through the binary.
fn cli_lists_and_shows(out: &Path, doc: &str) {
    let work = tempfile::tempdir().unwrap();
    let evd = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_evd"))
            .args(args)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    evd(&["keys", "generate", "--out", "master.toml"]);
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    std::fs::write(
        work.path().join("consumer.toml"),
        format!(
            "registry_dir = \"{}\"\nkeyring_path = \"master.toml\"\noutput_url = \"file://{}\"\n[kafka]\nbootstrap_servers = \"unused:9092\"\n",
            registry.display(),
            out.display()
        ),
    )
    .unwrap();
    let list = evd(&["quarantine", "--config", "consumer.toml", "list"]);
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.contains(doc))
        .expect("the document is listed")
        .split_whitespace()
        .collect();
    let hour = H.to_string();
    assert_eq!(
        row,
        ["schema", "PageView", hour.as_str(), "5", doc, "(replayed)"],
        "{list}"
    );
    let show = evd(&["quarantine", "--config", "consumer.toml", "show", doc]);
    assert!(show.contains("5 events, replayed"), "{show}");
    assert_eq!(show.matches("; valid now").count(), 5, "{show}");
}
