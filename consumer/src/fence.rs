//! The zombie fence, asked right before a flush's commit point (`Output::commit_fenced`).
//!
//! A consumer that stopped polling (paused, or stuck in a slow flush past
//! `max.poll.interval.ms`) has lost its partitions; their new owner reads the same
//! batches and commits them. Two checks stand between such a flush and its manifest:
//!
//! 1. the group coordinator still counts this member as the partitions' owner (a
//!    non-advancing offset commit of where the flush began; a stale generation is
//!    refused) — in `run`;
//! 2. no manifest committed since this consumer's ledger was built holds one of the
//!    flush's batches ([`Output::committed_elsewhere`]): it reads the live manifests
//!    its ledger has not applied, refuses on the first shared batch, and applies the
//!    rest, so the next flush reads only what is newer.
//!
//! What remains is a commit by another consumer inside the milliseconds between this
//! check and the manifest's create-only put.

use futures::TryStreamExt;

use crate::commit::{CommitError, Output};
use crate::ledger::{Ledger, Manifest};

impl Output {
    /// Refuses (`Err` with the reason) when a manifest this ledger has not applied
    /// holds a batch `ours` lists; applies every such manifest to `ledger` otherwise.
    pub async fn committed_elsewhere(
        &self,
        ours: &Manifest,
        ledger: &mut Ledger,
    ) -> Result<(), String> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.path(crate::layout::MANIFESTS_DIR)))
            .try_collect()
            .await
            .map_err(|e| format!("listing manifests: {e}"))?;
        for meta in listed {
            let Some(flush_id) = meta
                .location
                .filename()
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if flush_id == ours.flush_id || ledger.has_applied(flush_id) {
                continue;
            }
            let other = match self.read_live_or_archived(&meta.location).await {
                Ok(m) => m,
                Err(CommitError::Store(object_store::Error::NotFound { .. })) => continue,
                Err(e) => return Err(format!("reading {}: {e}", meta.location)),
            };
            ledger.apply(&other);
            if let Some((origin, seq)) = ledger.first_committed(ours) {
                return Err(format!(
                    "batch {seq} of {origin} was committed meanwhile by flush {}",
                    other.flush_id
                ));
            }
        }
        Ok(())
    }
}
