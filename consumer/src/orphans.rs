//! Orphan staging files: data a flush staged (step 1) and never committed.
//!
//! A staging directory `_evd/staging/<flush_id>/` that no manifest claims belongs to a
//! flush that crashed before its commit point — or to one that is still running on
//! another consumer, however slow it is or however far its clock is off. So recovery
//! never deletes by age: it first takes the flush id away with a create-only
//! `aborted` manifest (as the auditor does when it closes an hour), and deletes the
//! files only when that create won or an aborted manifest was already there. A flush
//! that finds its id aborted stages its files again under the next attempt id
//! (`restage`) and commits that, so it never commits files that were deleted.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::commit::{CommitError, Output};
use crate::ledger::Manifest;

/// Moves a flush's staged files (and the manifest's references to them) under its
/// current `flush_id`: `_evd/staging/<flush_id>/<name>`.
pub(crate) fn restage(manifest: &mut Manifest, staged: &mut [(String, Bytes)]) {
    let moved = |rel: &str| {
        let name = rel.rsplit('/').next().unwrap_or_default();
        crate::layout::staging_file(&manifest.flush_id, name)
    };
    for (rel, _) in staged.iter_mut() {
        *rel = moved(rel);
    }
    let files: Vec<String> = manifest.files.iter().map(|f| moved(&f.staging)).collect();
    for (f, rel) in manifest.files.iter_mut().zip(files) {
        f.staging = rel;
    }
}

impl Output {
    /// Deletes staging files no manifest in `claimed` lists, flush by flush, once
    /// their flush id is taken away (module doc). `by` names this consumer in the
    /// aborted manifests it writes.
    pub(crate) async fn clean_orphans(
        &self,
        claimed: &HashSet<Path>,
        by: &str,
    ) -> Result<(), CommitError> {
        let staging: Vec<_> = self
            .store
            .list(Some(&self.path(crate::layout::STAGING_DIR)))
            .try_collect()
            .await?;
        let mut by_flush: BTreeMap<String, Vec<Path>> = BTreeMap::new();
        for meta in staging {
            if claimed.contains(&meta.location) {
                continue;
            }
            let rel = self.relative(&meta.location);
            let Some(flush_id) = rel
                .strip_prefix(crate::layout::STAGING_DIR)
                .and_then(|r| r.trim_start_matches('/').split('/').next())
                .filter(|id| !id.is_empty())
            else {
                continue;
            };
            by_flush
                .entry(flush_id.to_string())
                .or_default()
                .push(meta.location);
        }
        for (flush_id, files) in by_flush {
            if !self.take_flush_id(&flush_id, by).await? {
                continue;
            }
            tracing::info!(
                "deleting {} staged files of flush {flush_id}, which never committed",
                files.len()
            );
            for path in files.iter().chain([&self.pending_path(&flush_id)]) {
                match self.store.delete(path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Whether `flush_id`'s staged files are garbage: its flush finished (its manifest
    /// is archived) or can never commit (this call created its aborted manifest, or an
    /// aborted one was there). False when a live manifest holds it: recovery finishes
    /// that flush.
    async fn take_flush_id(&self, flush_id: &str, by: &str) -> Result<bool, CommitError> {
        let archived = self.path(&crate::layout::archived_manifest(&format!(
            "{flush_id}.json"
        )));
        if self.exists(&archived).await? {
            return Ok(true);
        }
        let live = self.manifest_path(flush_id);
        let now = chrono::Utc::now().timestamp_millis();
        if self
            .create(&live, Manifest::aborted(flush_id, by, now).to_json())
            .await?
        {
            // A compaction may have archived the real manifest between the two checks:
            // then this aborted one must not stand beside it.
            if self.exists(&archived).await? {
                let _ = self.store.delete(&live).await;
            }
            return Ok(true);
        }
        Ok(self.read_live_or_archived(&live).await?.aborted)
    }
}
