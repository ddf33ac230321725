//! Closing an hour: making an hour folder immutable while consumers may be committing
//! into it at the same moment.
//!
//! The auditor closes `(type, hour)` in three steps:
//!
//! 1. create `_evd/closing/<type>/<hour>` (create-only; "already exists" is fine: a
//!    close interrupted by a crash is simply done again);
//! 2. list `_evd/pending/`: for each flush there, create its manifest as `aborted`
//!    (create-only). If that wins, the flush never commits under that id; its consumer
//!    sees the aborted manifest, re-checks closing intents and commits again, moving the
//!    closed hour's files to the next open hour. If the consumer's manifest was there
//!    first, the flush is committed: the auditor finishes it (copies its files to their
//!    final paths; idempotent, as in recovery);
//! 3. list the hour folder: those files are the hour, for good. The caller writes
//!    `_CLOSED.json` (create-only) there with the counts and this file list.
//!
//! Why no file can join the folder after step 3: a flush puts `pending` *before* it
//! checks for closing intents (commit step 2a, 2b). With a linearizable store, either the
//! flush's check comes after step 1 (it sees the intent and moves off the hour), or its
//! `pending` was there before step 2's listing (so step 2 aborts or finishes it), or
//! it was already done (its files are in step 3's listing). `pending` is deleted only
//! after `done`.

use evd_schemas::Hour;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::commit::{CommitError, Output};
use crate::layout::{self, hour_dir};
use crate::ledger::Manifest;

/// A data file of a closed hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourFile {
    /// Path relative to the output prefix.
    pub path: String,
    pub bytes: u64,
}

impl Output {
    /// Steps 1–3: afterwards no flush adds a file to the folder; returns its files.
    pub async fn seal_hour(
        &self,
        event_type: &str,
        hour: Hour,
        by: &str,
        now_ms: i64,
    ) -> Result<Vec<HourFile>, CommitError> {
        self.create(
            &self.closing_path(event_type, hour),
            now_ms.to_string().into_bytes(),
        )
        .await?;
        for pending in self.list(&self.path(layout::PENDING_DIR)).await? {
            let Some(flush_id) = pending.filename().map(str::to_string) else {
                continue;
            };
            let manifest_path = self.manifest_path(&flush_id);
            let abort = Manifest::aborted(&flush_id, by, now_ms);
            if self.create(&manifest_path, abort.to_json()).await? {
                let _ = self.store.delete(&pending).await;
                continue;
            }
            let manifest = self.read_manifest(&manifest_path).await?;
            if !manifest.aborted && !self.exists(&self.done_path(&flush_id)).await? {
                self.finish(&manifest).await?;
            }
        }
        self.hour_files(event_type, hour).await
    }

    /// The Parquet files in an hour folder, sorted by path.
    pub async fn hour_files(
        &self,
        event_type: &str,
        hour: Hour,
    ) -> Result<Vec<HourFile>, CommitError> {
        let dir = self.path(&hour_dir(event_type, hour));
        let metas: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut files: Vec<HourFile> = metas
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
            .map(|m| HourFile {
                path: self.relative(&m.location),
                bytes: m.size,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Writes the closed marker (create-only). `Ok(false)`: the hour was closed before.
    pub async fn write_closed_marker(
        &self,
        event_type: &str,
        hour: Hour,
        json: Vec<u8>,
    ) -> Result<bool, CommitError> {
        let path = self.path(&layout::closed_marker(event_type, hour));
        self.create(&path, json).await
    }

    /// `path` relative to the prefix.
    pub fn relative(&self, path: &object_store::path::Path) -> String {
        let full = path.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            return full.to_string();
        }
        full.strip_prefix(prefix)
            .map(|rest| rest.trim_start_matches('/').to_string())
            .unwrap_or_else(|| full.to_string())
    }
}
