//! Ledger compaction: keeping start-up and rebalance time flat as manifests pile up.
//!
//! ```text
//! _evd/ledger/<generation, 20 digits>.json   LedgerSnapshot: committed seqs per agent
//! _evd/archive/manifests/<flush_id>.json     manifests folded into a snapshot
//! ```
//!
//! A compactor (any consumer, when it finds more than `compact_after_manifests` live
//! manifests at recovery, or every few flushes while it runs: `compact_finished`)
//! writes generation g+1 = generation g ∪ every live manifest whose flush is done (and
//! every aborted one), create-only — losing that race to another consumer just skips
//! this compaction. Generation g is the newest one **when
//! the snapshot is written**, not the one the compactor's recovery read: another
//! consumer may have folded (and archived) manifests this compactor never listed, and
//! g+1 must hold them too. Only then does it move the folded
//! manifests to the archive (copy, then delete) and delete their `done` markers.
//!
//! Readers (`recover`) **list the live manifests first, then read the newest
//! snapshot**. A manifest is removed from the live list only after a snapshot holding
//! it exists, so whatever a reader's listing misses, the snapshot it reads afterwards
//! holds. A manifest listed but archived before the reader gets it is read from the
//! archive. Applying a manifest a snapshot already holds changes nothing.

use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::commit::{CommitError, Output};
use crate::layout;
use crate::ledger::{Ledger, LedgerSnapshot, Manifest};

/// Default for `compact_after_manifests`.
pub const DEFAULT_COMPACT_AFTER: usize = 500;

/// How many of its own flushes a running consumer commits between two looks at the
/// live manifests ([`Output::compact_finished`]): a tenth of `compact_after`, at least
/// every flush and at most every 10. With C consumers, live manifests stay below
/// about `compact_after + 10 × C` between start-ups.
pub fn compaction_check_every(compact_after: usize) -> usize {
    (compact_after / 10).clamp(1, 10)
}

impl Output {
    /// The newest ledger snapshot, if any.
    pub async fn latest_snapshot(&self) -> Result<Option<LedgerSnapshot>, CommitError> {
        let Some(path) = self.list(&self.path(layout::LEDGER_DIR)).await?.pop() else {
            return Ok(None);
        };
        let bytes = self.store.get(&path).await?.bytes().await?;
        LedgerSnapshot::from_json(&bytes)
            .map(Some)
            .map_err(|why| CommitError::Corrupt {
                path: path.to_string(),
                why,
            })
    }

    /// A live manifest, or its archived copy if a compaction moved it meanwhile.
    pub(crate) async fn read_live_or_archived(&self, live: &Path) -> Result<Manifest, CommitError> {
        match self.read_manifest(live).await {
            Err(CommitError::Store(object_store::Error::NotFound { .. })) => {
                let name = live.filename().unwrap_or_default();
                self.read_manifest(&self.path(&layout::archived_manifest(name)))
                    .await
            }
            other => other,
        }
    }

    /// What a running consumer does now and then, so that live manifests stay
    /// bounded between start-ups: with more than `compact_after` live manifests, folds
    /// those whose flush is done (or aborted) into the next snapshot. Unlike recovery
    /// it finishes nothing and deletes no staging file: a flush still in progress (no
    /// `done` marker) stays live, and so does a manifest that does not parse (recovery
    /// sets it aside). Returns how many manifests were folded.
    pub async fn compact_finished(
        &self,
        compact_after: usize,
        by: &str,
        now_ms: i64,
    ) -> Result<usize, CommitError> {
        let live = self.list(&self.path(layout::MANIFESTS_DIR)).await?;
        if live.len() <= compact_after {
            return Ok(0);
        }
        let done = self.done_flushes().await?;
        let mut ledger = Ledger::default();
        let mut folded = Vec::new();
        for path in live {
            let manifest = match self.read_live_or_archived(&path).await {
                Ok(m) => m,
                Err(CommitError::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            };
            if manifest.aborted || done.contains(&manifest.flush_id) {
                ledger.apply(&manifest);
                folded.push((path, manifest.flush_id));
            }
        }
        if folded.is_empty() || !self.compact(&ledger, &folded, by, now_ms).await? {
            return Ok(0);
        }
        Ok(folded.len())
    }

    /// Folds `folded` (live manifests of finished or aborted flushes, already applied
    /// to `ledger`) into the next snapshot generation and archives them. Returns false
    /// when another consumer wrote that generation first.
    pub async fn compact(
        &self,
        ledger: &Ledger,
        folded: &[(Path, String)],
        by: &str,
        now_ms: i64,
    ) -> Result<bool, CommitError> {
        let latest = self.latest_snapshot().await?;
        let generation = latest.as_ref().map_or(1, |s| s.generation + 1);
        let mut merged = ledger.clone();
        if let Some(s) = &latest {
            merged.absorb(s);
        }
        let snapshot = merged.snapshot(generation, by, now_ms);
        let path = self.path(&layout::ledger_snapshot(generation));
        if !self.create(&path, snapshot.to_json()).await? {
            return Ok(false);
        }
        for (live, flush_id) in folded {
            let name = live.filename().unwrap_or_default();
            let archived = self.path(&layout::archived_manifest(name));
            let bytes = match self.store.get(live).await {
                Ok(r) => r.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            self.store.put(&archived, bytes.into()).await?;
            for gone in [live.clone(), self.done_path(flush_id)] {
                match self.store.delete(&gone).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tracing::info!(
            "ledger snapshot generation {generation}: folded {} manifests",
            folded.len()
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::compaction_check_every;

    #[test]
    fn a_running_consumer_looks_every_tenth_of_the_threshold_within_1_to_10_flushes() {
        assert_eq!(compaction_check_every(0), 1);
        assert_eq!(compaction_check_every(3), 1);
        assert_eq!(compaction_check_every(50), 5);
        assert_eq!(compaction_check_every(500), 10);
    }
}
