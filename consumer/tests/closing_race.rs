//! Closed hours are immutable, also when consumers commit into the hour at the moment
//! the auditor closes it (protocol: `consumer/src/closing.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use evd_consumer::commit::Output;
use evd_consumer::layout::hour_dir;
use evd_consumer::ledger::{FileEntry, MANIFEST_VERSION, Manifest};
use evd_schemas::Hour;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

const HOUR: Hour = Hour(493_127);

fn output(dir: &std::path::Path) -> Output {
    Output {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap()),
        prefix: Path::default(),
    }
}

fn flush(id: &str) -> (Manifest, Vec<(String, Bytes)>) {
    let staging = format!("_evd/staging/{id}/0.parquet");
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        flush_id: id.to_string(),
        consumer_id: "c".into(),
        created_at_ms: 0,
        files: vec![FileEntry {
            staging: staging.clone(),
            final_path: format!("{}/{id}-0.parquet", hour_dir("T", HOUR)),
            event_type: "T".into(),
            hour: HOUR.0,
            rows: 1,
            bytes: 2,
        }],
        batches: vec![],
        delivered: vec![],
        quarantine: vec![],
        offsets: vec![],
        aborted: false,
    };
    (manifest, vec![(staging, Bytes::from(id.to_string()))])
}

/// A small deterministic generator, so a failing round is replayed by its seed.
fn jitter(seed: u64, i: u64) -> Duration {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 29;
    Duration::from_micros(x % 3_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_committed_while_an_hour_closes_land_in_it_or_the_next_never_after_the_seal() {
    let (mut in_hour, mut moved) = (0, 0);
    for seed in 0..150u64 {
        let dir = tempfile::tempdir().unwrap();
        let out = output(dir.path());
        let mut tasks = Vec::new();
        for i in 0..4u64 {
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(jitter(seed, i)).await;
                let (mut manifest, staged) = flush(&format!("f{i}"));
                out.commit(&mut manifest, staged).await.unwrap();
                manifest
            }));
        }
        let closer = {
            let out = out.clone();
            tokio::spawn(async move {
                tokio::time::sleep(jitter(seed, 99)).await;
                out.seal_hour("T", HOUR, "auditor", 1).await.unwrap()
            })
        };
        let sealed = closer.await.unwrap();
        let mut manifests = Vec::new();
        for t in tasks {
            manifests.push(t.await.unwrap());
        }
        // The seal's file list is the folder, also after every flush finished.
        let now = out.hour_files("T", HOUR).await.unwrap();
        assert_eq!(sealed, now, "seed {seed}: a file joined a sealed hour");
        // Every flush is visible exactly once, where its manifest says.
        for m in &manifests {
            let file = &m.files[0];
            let hour = Hour(file.hour);
            assert!(hour == HOUR || hour == HOUR.next(), "seed {seed}: {file:?}");
            let listed = out.hour_files("T", hour).await.unwrap();
            let hits = listed.iter().filter(|f| f.path == file.final_path).count();
            assert_eq!(hits, 1, "seed {seed}: {} not visible", file.final_path);
            if hour == HOUR {
                in_hour += 1;
            } else {
                moved += 1;
            }
        }
        let next = out.hour_files("T", HOUR.next()).await.unwrap();
        assert_eq!(now.len() + next.len(), 4, "seed {seed}: a stray file");
    }
    println!("flushes kept in the hour: {in_hour}, moved to the next: {moved}");
    assert!(in_hour > 0 && moved > 0, "the race was not exercised");
}

#[tokio::test]
async fn a_flush_caught_between_pending_and_manifest_is_aborted_and_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(dir.path());
    // The flush put `pending` and checked for closing intents (none yet)...
    std::fs::create_dir_all(dir.path().join("_evd/pending")).unwrap();
    std::fs::write(dir.path().join("_evd/pending/f1"), b"").unwrap();
    // ...then the auditor closes the hour, aborting it.
    let sealed = out.seal_hour("T", HOUR, "auditor", 1).await.unwrap();
    assert!(sealed.is_empty());
    let (mut manifest, staged) = flush("f1");
    out.commit(&mut manifest, staged).await.unwrap();
    assert_eq!(manifest.flush_id, "f1-r1");
    assert_eq!(manifest.files[0].hour, HOUR.next().0);
    assert!(out.hour_files("T", HOUR).await.unwrap().is_empty());
    assert_eq!(out.hour_files("T", HOUR.next()).await.unwrap().len(), 1);
    // The aborted id dedups nothing: recovery's ledger holds only the real flush.
    let ledger = out.recover(100, "c").await.unwrap();
    assert_eq!(ledger.manifests(), 2);
    assert!(!dir.path().join("_evd/pending/f1").exists());
    assert!(!dir.path().join("_evd/pending/f1-r1").exists());
}
