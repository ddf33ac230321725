//! A slow flush keeps its staged files when another consumer recovers meanwhile.
//! Recovery used to delete unclaimed staging files older than 10 minutes (by the
//! store's clock against the local one): a slow flush or a skewed clock then committed
//! a manifest whose files were gone, `finish` failed with `Corrupt`, and every consumer
//! of the group crash-looped on it. Now recovery takes the flush id away first
//! (create-only aborted manifest) and the flush commits again under a new id.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use evd_consumer::commit::Output;
use evd_consumer::ledger::{AgentBatches, FileEntry, MANIFEST_VERSION, Manifest};
use evd_consumer::store_faults::{FaultRates, FaultyStore};
use evd_schemas::{Hour, Origin, SpoolId};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

const HOUR: Hour = Hour(494_000);

/// A flush of two files: its second upload keeps it from its commit point after the
/// first file is staged.
fn flush(id: &str) -> (Manifest, Vec<(String, Bytes)>) {
    let file = |n: usize| FileEntry {
        staging: format!("_evd/staging/{id}/{n}.parquet"),
        final_path: format!("T/{}/{id}-{n}.parquet", HOUR.partition_path()),
        event_type: "T".into(),
        hour: HOUR.0,
        rows: 1,
        bytes: 4,
    };
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        flush_id: id.into(),
        consumer_id: "y".into(),
        created_at_ms: 1,
        files: vec![file(0), file(1)],
        batches: vec![AgentBatches {
            agent_id: "a".into(),
            spool_id: SpoolId(1),
            ranges: vec![(1, 1)],
        }],
        delivered: vec![],
        quarantine: vec![],
        offsets: vec![],
        aborted: false,
    };
    let staged = manifest
        .files
        .iter()
        .map(|f| (f.staging.clone(), Bytes::from_static(b"data")))
        .collect();
    (manifest, staged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_flush_keeps_its_staged_files_when_another_consumer_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let local = || LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let fast = Output {
        store: Arc::new(local()),
        prefix: Path::default(),
    };
    // Consumer Y's staging uploads take 3 s each: once its first file is staged, its
    // flush is 3 s from its commit point.
    let rates = FaultRates {
        slow_staging_ms: 3_000,
        ..FaultRates::default()
    };
    let slow = Output {
        store: Arc::new(FaultyStore::new(Arc::new(local()), rates, 1)),
        prefix: Path::default(),
    };
    let (mut manifest, staged) = flush("y-1");
    let y =
        tokio::spawn(async move { slow.commit(&mut manifest, staged).await.map(|()| manifest) });
    let staged_file = dir.path().join("_evd/staging/y-1/0.parquet");
    let since = Instant::now();
    while !staged_file.exists() {
        if y.is_finished() {
            panic!("Y ended before staging: {:?}", y.await);
        }
        assert!(since.elapsed() < Duration::from_secs(20), "Y never staged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its clock is an hour behind (or it is that slow): by age, an orphan.
    std::fs::File::options()
        .write(true)
        .open(&staged_file)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3_600))
        .unwrap();
    fast.recover(1_000, "x").await.unwrap();

    let committed = y.await.unwrap().expect("Y's flush commits");
    let final_file = dir.path().join(&committed.files[0].final_path);
    assert_eq!(std::fs::read(&final_file).unwrap(), b"data");
    let ledger = fast.recover(1_000, "z").await.unwrap();
    assert!(ledger.is_committed(&Origin::new("a", SpoolId(1)), 1));
    println!(
        "Y committed as {} after X took y-1 away",
        committed.flush_id
    );
    // Nothing staged is left behind once a recovery ran after the commit.
    assert_eq!(files_under(&dir.path().join("_evd/staging")), 0);
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
            .sum()
    })
}
