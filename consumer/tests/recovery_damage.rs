//! Recovery survives what a crash of the store itself leaves: an empty or truncated
//! manifest (a local disk that lost part of a write at a power loss). Before, recovery
//! failed with `Corrupt` on every attempt, so every consumer of the group crash-looped.

mod common;
use common::{a, commit, output};

#[tokio::test]
async fn an_empty_or_truncated_manifest_is_set_aside_and_recovery_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(dir.path());
    for seq in 1..=3 {
        commit(&out, seq).await;
    }
    let manifests = dir.path().join("_evd/manifests");
    std::fs::write(manifests.join("f000002.json"), b"").unwrap();
    let whole = std::fs::read(manifests.join("f000003.json")).unwrap();
    std::fs::write(manifests.join("f000003.json"), &whole[..whole.len() / 2]).unwrap();

    let ledger = out.recover(1_000, "c").await.expect("recovery goes on");
    let a = a();
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
