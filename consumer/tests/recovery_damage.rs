//! Recovery survives what a crash of the store itself leaves: an empty or truncated
//! manifest (a local disk that lost part of a write at a power loss). Before, recovery
//! failed with `Corrupt` on every attempt, so every consumer of the group crash-looped.

use std::sync::Arc;

use bytes::Bytes;
use evd_consumer::commit::Output;
use evd_consumer::ledger::{AgentBatches, MANIFEST_VERSION, Manifest};
use evd_schemas::{Origin, SpoolId};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

async fn commit(out: &Output, seq: u64) {
    let mut m = Manifest {
        version: MANIFEST_VERSION,
        flush_id: format!("f{seq:06}"),
        consumer_id: "c".into(),
        created_at_ms: 0,
        files: vec![],
        batches: vec![AgentBatches {
            agent_id: "a".into(),
            spool_id: SpoolId(1),
            ranges: vec![(seq, seq)],
        }],
        delivered: vec![],
        quarantine: vec![],
        offsets: vec![],
        aborted: false,
    };
    out.commit(&mut m, Vec::<(String, Bytes)>::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_empty_or_truncated_manifest_is_set_aside_and_recovery_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = Output {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
        prefix: Path::default(),
    };
    for seq in 1..=3 {
        commit(&out, seq).await;
    }
    let manifests = dir.path().join("_evd/manifests");
    std::fs::write(manifests.join("f000002.json"), b"").unwrap();
    let whole = std::fs::read(manifests.join("f000003.json")).unwrap();
    std::fs::write(manifests.join("f000003.json"), &whole[..whole.len() / 2]).unwrap();

    let ledger = out.recover(1_000, "c").await.expect("recovery goes on");
    let a = Origin::new("a", SpoolId(1));
    assert!(ledger.is_committed(&a, 1));
    assert!(!ledger.is_committed(&a, 2) && !ledger.is_committed(&a, 3));
    assert_eq!(ledger.corrupt_manifests(), 2);
    let aside = dir.path().join("_evd/corrupt/manifests");
    assert_eq!(std::fs::read_dir(&aside).unwrap().count(), 2);
    assert!(!manifests.join("f000002.json").exists());
    // The next recovery finds nothing corrupt left.
    assert_eq!(
        out.recover(1_000, "c").await.unwrap().corrupt_manifests(),
        0
    );
}
