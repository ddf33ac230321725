//! A commit repeated after its manifest put succeeded but the reply was lost: the
//! retry finds the manifest ("already exists") and adopts it when it is the same
//! flush — even if this attempt moved files to another hour — and refuses a manifest
//! of another flush under the same id.

use std::sync::Arc;

use bytes::Bytes;
use evd_consumer::commit::{CommitError, Output};
use evd_consumer::ledger::{AgentBatches, FileEntry, MANIFEST_VERSION, Manifest};
use evd_schemas::Hour;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

fn manifest(hour: u32, batch: u64) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        flush_id: "c-1-000001".into(),
        consumer_id: "c".into(),
        created_at_ms: 7,
        files: vec![FileEntry {
            staging: "_evd/staging/c-1-000001/0.parquet".into(),
            final_path: format!("T/{}/c-1-000001-0.parquet", Hour(hour).partition_path()),
            event_type: "T".into(),
            hour,
            rows: 1,
            bytes: 4,
        }],
        batches: vec![AgentBatches {
            agent_id: "a".into(),
            spool_id: evd_schemas::SpoolId(1),
            ranges: vec![(batch, batch)],
        }],
        delivered: vec![],
        quarantine: vec![],
        offsets: vec![],
        aborted: false,
    }
}

fn staged() -> Vec<(String, Bytes)> {
    vec![(
        "_evd/staging/c-1-000001/0.parquet".into(),
        Bytes::from_static(b"PAR1"),
    )]
}

#[tokio::test]
async fn a_manifest_whose_reply_was_lost_is_adopted_by_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let out = Output {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
        prefix: Path::default(),
    };
    // The first attempt created the manifest with its file in hour 100; the reply
    // was lost. Meanwhile the retry chose hour 101 (a closing intent appeared).
    let first = manifest(100, 5);
    out.store
        .put(
            &Path::from("_evd/manifests/c-1-000001.json"),
            PutPayload::from(first.to_json()),
        )
        .await
        .unwrap();
    let mut retry = manifest(101, 5);
    out.commit(&mut retry, staged()).await.expect("adopted");
    assert_eq!(retry, first, "the retry acks with what was committed");
    let final_file = Path::from(first.files[0].final_path.as_str());
    assert!(
        out.store.head(&final_file).await.is_ok(),
        "finished as committed"
    );

    // Another flush under the same id is not ours.
    let mut other = manifest(100, 6);
    let err = out.commit(&mut other, staged()).await.unwrap_err();
    assert!(matches!(err, CommitError::Corrupt { .. }), "{err}");
}
