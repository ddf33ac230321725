//! The commit protocol: how a flush becomes visible exactly once.
//!
//! Object names come from `layout`; what they mean here:
//!
//! ```text
//! data_file        final data (readers glob these)
//! staging_file     data before its commit
//! manifest         the commit point (create-only)
//! done             every final file exists
//! pending          flush between 2a and 4
//! closing          the auditor closes that hour
//! closed_marker    the hour is closed (`closing`)
//! quarantined_*    what could not be delivered
//! ```
//!
//! Steps of a flush, and what a crash after each leaves:
//!
//! 1. put every data file to `staging` — crash: orphan staging files, nothing visible,
//!    offsets not committed, so the batches are read again; recovery deletes orphans
//!    only after taking their flush id away (`orphans`);
//! 2. (a) put `pending`, then (b) move files of hours with a closing intent to the next
//!    open hour (late data; see `closing` for why this order makes closed hours
//!    immutable), then (c) put the manifest with `PutMode::Create` — **commit point**.
//!    If the auditor or a recovering consumer aborted the flush id first (an `aborted`
//!    manifest exists; the latter then deletes its staging files), stage the files
//!    again and repeat 2 under a new id. Crash before (c): the auditor aborts the stale pending flush;
//!    after (c): recovery sees a manifest without `done` and finishes step 3;
//! 3. copy each staging file to its final path (an existing final file with the same
//!    name holds the same bytes: names are unique per flush, so copying again is
//!    harmless) — crash mid-way: some final
//!    files visible, the rest copied by recovery; never a partial file (puts and copies
//!    are atomic per object);
//! 4. put `done`, delete staging, delete `pending`;
//! 5. commit Kafka offsets — crash before: batches are read again and dropped by the
//!    ledger (and acked again);
//! 6. publish acks — crash before: agents retransmit, the ledger drops the copies and
//!    acks them.
//!
//! Store requests are retried one by one (`store_retry`), and a store error that
//! still reaches step 1–4 makes the caller repeat the whole `commit`: each step is
//! idempotent, and a manifest found on retry is adopted when it is the same flush.
//!
//! So every final file is listed in a manifest, no batch is in two manifests (the
//! ledger is consulted before a batch is buffered), and nothing is acked before its
//! manifest exists.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use evd_schemas::Hour;

use crate::layout;
use crate::ledger::{Ledger, Manifest};
use crate::test_faults::crash_point;

/// Asked right before a flush's commit point whether it may still commit (the zombie
/// fence, `crate::fence`): `Err` says why not.
pub trait Fence: Send {
    fn allow<'a>(&'a mut self, manifest: &'a Manifest) -> BoxFuture<'a, Result<(), String>>;
}

/// Lets every commit through (tests and tools that are no group member).
pub struct NoFence;

impl Fence for NoFence {
    fn allow<'a>(&'a mut self, _: &'a Manifest) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Where the consumer's objects live.
#[derive(Clone)]
pub struct Output {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{path}: {why}")]
    Corrupt { path: String, why: String },
    /// The fence refused the commit point: this flush must not commit (its consumer
    /// lost its partitions, or its batches were committed elsewhere). Nothing of it is
    /// visible; its staged files are orphans that recovery cleans up.
    #[error("not committed: {0}")]
    Fenced(String),
}

impl Output {
    pub fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// The manifest's path relative to the prefix (named in acks).
    pub fn manifest_rel(&self, flush_id: &str) -> String {
        layout::manifest(flush_id)
    }

    pub(crate) fn manifest_path(&self, flush_id: &str) -> Path {
        self.path(&self.manifest_rel(flush_id))
    }

    pub(crate) fn done_path(&self, flush_id: &str) -> Path {
        self.path(&layout::done(flush_id))
    }

    /// Present from before a flush's closing-intent check until it is done.
    pub(crate) fn pending_path(&self, flush_id: &str) -> Path {
        self.path(&layout::pending(flush_id))
    }

    /// The auditor's intent to close an hour; no flush adds files to it once it exists.
    pub(crate) fn closing_path(&self, event_type: &str, hour: Hour) -> Path {
        self.path(&layout::closing(event_type, hour))
    }

    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<(), CommitError> {
        self.store
            .put(&self.path(rel), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Steps 1–4 for one flush (staged files are given as `(staging path, bytes)`).
    ///
    /// Two things may change `manifest` on the way, and the caller acks with it as it
    /// is afterwards: files of an hour the auditor is closing move to the next hour that
    /// is not (`closing` has the protocol), and when the auditor aborted an attempt the
    /// flush is committed again under a new flush id.
    pub async fn commit(
        &self,
        manifest: &mut Manifest,
        staged: Vec<(String, Bytes)>,
    ) -> Result<(), CommitError> {
        self.commit_fenced(manifest, staged, &mut NoFence).await
    }

    /// [`commit`](Self::commit), asking `fence` right before the commit point — after
    /// staging uploads, `pending` and the closing-hour check, the slow steps — whether
    /// the flush may still commit. A refusal returns [`CommitError::Fenced`].
    pub async fn commit_fenced(
        &self,
        manifest: &mut Manifest,
        mut staged: Vec<(String, Bytes)>,
        fence: &mut dyn Fence,
    ) -> Result<(), CommitError> {
        for (rel, bytes) in &staged {
            self.put(rel, bytes.clone()).await?;
        }
        crash_point("staged");
        let first_id = manifest.flush_id.clone();
        for attempt in 0u32.. {
            if attempt > 0 {
                // Whoever aborted the last attempt may delete its staging files.
                manifest.flush_id = format!("{first_id}-r{attempt}");
                crate::orphans::restage(manifest, &mut staged);
                for (rel, bytes) in &staged {
                    self.put(rel, bytes.clone()).await?;
                }
            }
            let pending = self.pending_path(&manifest.flush_id);
            self.store
                .put(&pending, PutPayload::from_static(b""))
                .await?;
            // Only after `pending` exists: an auditor closing an hour from now on
            // either sees this flush pending or has its closing intent seen here.
            self.move_off_closing_hours(manifest).await?;
            fence.allow(manifest).await.map_err(CommitError::Fenced)?;
            let path = self.manifest_path(&manifest.flush_id);
            if !self.create(&path, manifest.to_json()).await? {
                let existing = self.read_manifest(&path).await?;
                if existing.aborted {
                    let _ = self.store.delete(&pending).await;
                    continue;
                }
                if !existing.is_retry_of(manifest) {
                    return Err(CommitError::Corrupt {
                        path: path.to_string(),
                        why: "another manifest holds this flush id".into(),
                    });
                }
                // Our own earlier put whose reply was lost: it is committed, as it was
                // written (its files may sit in other hours than this attempt chose).
                *manifest = existing;
            }
            crash_point("manifest");
            self.finish(manifest).await?;
            let _ = self.store.delete(&pending).await;
            return Ok(());
        }
        unreachable!("the attempt loop only ends by returning")
    }

    /// Moves every file whose hour has a closing intent to the next hour without one.
    async fn move_off_closing_hours(&self, manifest: &mut Manifest) -> Result<(), CommitError> {
        for file in &mut manifest.files {
            let mut hour = Hour(file.hour);
            while self
                .exists(&self.closing_path(&file.event_type, hour))
                .await?
            {
                hour = hour.next();
            }
            if hour.0 != file.hour {
                file.hour = hour.0;
                file.final_path = layout::moved_data_file(&file.final_path, &file.event_type, hour);
            }
        }
        Ok(())
    }

    /// A create-only put: `Ok(false)` when the object already exists.
    pub async fn create(&self, path: &Path, bytes: Vec<u8>) -> Result<bool, CommitError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn exists(&self, path: &Path) -> Result<bool, CommitError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn read_manifest(&self, path: &Path) -> Result<Manifest, CommitError> {
        let bytes = self.store.get(path).await?.bytes().await?;
        Manifest::from_json(&bytes).map_err(|why| CommitError::Corrupt {
            path: path.to_string(),
            why,
        })
    }

    /// Steps 3–4: idempotent, used by a flush and by recovery.
    pub(crate) async fn finish(&self, manifest: &Manifest) -> Result<(), CommitError> {
        for (i, file) in manifest.files.iter().enumerate() {
            let from = self.path(&file.staging);
            let to = self.path(&file.final_path);
            // Final names are unique per flush and hold the same bytes as staging, so a
            // plain copy is idempotent (and works on every backend).
            match self.store.copy(&from, &to).await {
                Ok(()) => {}
                // Staging already gone: the final copy must exist then.
                Err(object_store::Error::NotFound { .. }) => {
                    self.store
                        .head(&to)
                        .await
                        .map_err(|_| CommitError::Corrupt {
                            path: file.final_path.clone(),
                            why: format!(
                                "neither final nor staging copy exists for flush {}",
                                manifest.flush_id
                            ),
                        })?;
                }
                Err(e) => return Err(e.into()),
            }
            if i == 0 {
                crash_point("copy");
            }
        }
        self.store
            .put(
                &self.done_path(&manifest.flush_id),
                PutPayload::from_static(b""),
            )
            .await?;
        crash_point("done");
        for file in &manifest.files {
            match self.store.delete(&self.path(&file.staging)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Builds the ledger (newest snapshot + live manifests), finishing flushes a crash
    /// interrupted and deleting staging files no manifest claims. With more than
    /// `compact_after` live manifests, folds the finished ones into a new snapshot.
    pub async fn recover(&self, compact_after: usize, by: &str) -> Result<Ledger, CommitError> {
        let done = self.done_flushes().await?;
        // Live manifests first, then the snapshot (`compaction` says why).
        let live = self.list(&self.path(layout::MANIFESTS_DIR)).await?;
        let mut ledger = match self.latest_snapshot().await? {
            Some(s) => Ledger::from_snapshot(&s),
            None => Ledger::default(),
        };
        let mut claimed = std::collections::HashSet::new();
        let mut foldable = Vec::new();
        for path in live {
            let manifest = match self.read_live_or_archived(&path).await {
                Ok(m) => m,
                Err(CommitError::Corrupt { why, .. }) => {
                    self.set_aside_corrupt(&path, &why).await?;
                    ledger.note_corrupt_manifest();
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !manifest.aborted && !done.contains(&manifest.flush_id) {
                tracing::info!("finishing interrupted flush {}", manifest.flush_id);
                self.finish(&manifest).await?;
            }
            for f in &manifest.files {
                claimed.insert(self.path(&f.staging));
            }
            ledger.apply(&manifest);
            foldable.push((path, manifest.flush_id));
        }
        if foldable.len() > compact_after {
            let now = chrono::Utc::now().timestamp_millis();
            self.compact(&ledger, &foldable, by, now).await?;
        }
        self.clean_orphans(&claimed, by).await?;
        Ok(ledger)
    }

    /// Moves a live manifest that does not parse (empty or cut short: the store lost
    /// part of a write, e.g. a local disk without fsync at a power loss) to
    /// `_evd/corrupt/manifests/`, so recovery goes on instead of failing every consumer
    /// of the group. What it committed is no longer in the ledger: its batches, if
    /// retransmitted, are written again (duplicates, never a loss), and it is reported.
    async fn set_aside_corrupt(&self, live: &Path, why: &str) -> Result<(), CommitError> {
        let name = live.filename().unwrap_or_default().to_string();
        let aside = self.path(&layout::corrupt_manifest(&name));
        tracing::error!(
            "CORRUPT MANIFEST {live}: {why}; moved to {aside}. Its batches are not \
             in the ledger: a retransmit of them is written again (duplicate rows, not loss)."
        );
        match self.store.copy(live, &aside).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match self.store.delete(live).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Flush ids whose `done` marker exists: every step of the flush is finished.
    pub(crate) async fn done_flushes(
        &self,
    ) -> Result<std::collections::HashSet<String>, CommitError> {
        Ok(self
            .list(&self.path(layout::DONE_DIR))
            .await?
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    pub(crate) async fn list(&self, prefix: &Path) -> Result<Vec<Path>, CommitError> {
        let metas: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        let mut paths: Vec<Path> = metas.into_iter().map(|m| m.location).collect();
        paths.sort();
        Ok(paths)
    }
}
