//! Ledger compaction: snapshots replace piles of manifests without a reader ever
//! missing a committed batch, also while another consumer compacts under it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::path::Path;

mod common;
use common::{a, commit, output};

fn count(dir: &std::path::Path, sub: &str) -> usize {
    std::fs::read_dir(dir.join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_snapshot_folds_manifests_and_the_ledger_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(dir.path());
    for seq in 1..=40 {
        commit(&out, seq).await;
    }
    let before = out.recover(1_000, "c").await.unwrap();
    assert_eq!(before.manifests(), 40);
    let compacted = out.recover(10, "c").await.unwrap();
    assert_eq!(count(dir.path(), "_evd/manifests"), 0);
    assert_eq!(count(dir.path(), "_evd/archive/manifests"), 40);
    assert_eq!(count(dir.path(), "_evd/ledger"), 1);
    let after = out.recover(10, "c").await.unwrap();
    assert_eq!(
        after.manifests(),
        0,
        "start-up reads the snapshot, not 40 manifests"
    );
    for seq in 1..=40 {
        assert!(compacted.is_committed(&a(), seq) && after.is_committed(&a(), seq));
    }
    assert!(!after.is_committed(&a(), 41));
    // Later manifests stack on the snapshot; the next generation holds both.
    for seq in 41..=60 {
        commit(&out, seq).await;
    }
    let next = out.recover(10, "c").await.unwrap();
    assert!((1..=60).all(|s| next.is_committed(&a(), s)));
    assert_eq!(count(dir.path(), "_evd/ledger"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_miss_a_batch_while_others_compact() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(dir.path());
    let committed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (out, committed) = (out.clone(), committed.clone());
        tokio::spawn(async move {
            for seq in 1..=300 {
                commit(&out, seq).await;
                committed.store(seq, Ordering::SeqCst);
            }
        })
    };
    // Two consumers recovering (and compacting, at a low threshold) all along.
    let mut readers = Vec::new();
    for r in 0..2 {
        let (out, committed) = (out.clone(), committed.clone());
        readers.push(tokio::spawn(async move {
            let mut rounds = 0;
            while committed.load(Ordering::SeqCst) < 300 {
                let before = committed.load(Ordering::SeqCst);
                let ledger = out.recover(3 + r, &format!("c{r}")).await.unwrap();
                for seq in 1..=before {
                    assert!(
                        ledger.is_committed(&a(), seq),
                        "reader {r} round {rounds}: committed batch {seq} missing"
                    );
                }
                rounds += 1;
            }
            rounds
        }));
    }
    writer.await.unwrap();
    for r in readers {
        assert!(r.await.unwrap() > 5, "the readers raced the writer");
    }
    let last = out.recover(3, "c").await.unwrap();
    assert!((1..=300).all(|s| last.is_committed(&a(), s)));
    assert!(count(dir.path(), "_evd/ledger") > 1, "compactions happened");
}

/// Two consumers recovering at once (every rebalance): X lists f1..f5, f6 commits, Y
/// recovers and compacts (generation 1 holds f1..f6; f6 is archived), then X compacts
/// from its older view. Generation 2 must still hold f6, or every later recovery
/// misses it and a retransmit of its batches is written twice.
#[tokio::test]
async fn a_late_compaction_keeps_what_an_earlier_generation_folded() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(dir.path());
    for seq in 1..=5 {
        commit(&out, seq).await;
    }
    let x = out.recover(1_000, "x").await.unwrap();
    let x_folded: Vec<(Path, String)> = (1..=5)
        .map(|seq| {
            let id = format!("f{seq:06}");
            (Path::from(format!("_evd/manifests/{id}.json")), id)
        })
        .collect();
    commit(&out, 6).await;
    out.recover(1, "y").await.unwrap();
    assert_eq!(count(dir.path(), "_evd/ledger"), 1, "Y compacted");
    assert!(
        out.compact(&x, &x_folded, "x", 0).await.unwrap(),
        "X compacted too"
    );
    let fresh = out.recover(1_000, "z").await.unwrap();
    assert!(
        (1..=6).all(|s| fresh.is_committed(&a(), s)),
        "batch 6 dropped by the late compaction"
    );
}

/// What a running consumer does now and then: folds finished flushes only. A flush
/// whose manifest exists but is not done yet stays live for recovery to finish.
#[tokio::test]
async fn a_running_consumer_folds_finished_flushes_and_leaves_unfinished_ones_live() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(dir.path());
    for seq in 1..=5 {
        commit(&out, seq).await;
    }
    assert_eq!(
        out.compact_finished(5, "c", 0).await.unwrap(),
        0,
        "not over"
    );
    commit(&out, 6).await;
    // Flush 6 crashed between its manifest and `done`: not finished.
    std::fs::remove_file(dir.path().join("_evd/done/f000006")).unwrap();
    commit(&out, 7).await;
    assert_eq!(out.compact_finished(5, "c", 0).await.unwrap(), 6);
    assert_eq!(count(dir.path(), "_evd/manifests"), 1);
    assert_eq!(count(dir.path(), "_evd/archive/manifests"), 6);
    let ledger = out.recover(1_000, "c").await.unwrap();
    assert_eq!(
        ledger.manifests(),
        1,
        "the snapshot and the unfinished manifest"
    );
    for seq in 1..=7 {
        assert!(ledger.is_committed(&a(), seq), "{seq}");
    }
}
