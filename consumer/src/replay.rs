//! `evd quarantine`: what is in quarantine, and writing quarantined events once the
//! registry that refused them is fixed.
//!
//! **Events** a consumer's registry refused are kept per flush in
//! `_quarantine/schema/<flush_id>.jsonl`; the rest of their batch was delivered. A
//! replay re-validates every event of one document against the current registry
//! and commits their rows, exactly as the consumer would have written them
//! (`received_at`, `agent_id`, `spool_id`, `event_seq`, `batch_seq`), through the
//! consumer's commit protocol under the flush id `replay-<digest of the document
//! name>`, with nothing in it that varies between runs. So a second replay, or two
//! at once, meet that flush's manifest and finish it instead of writing again:
//! **each event is written once**. Rows of an hour that has closed go to the next open
//! hour, as late data does. All or nothing: if any event still fails, nothing is
//! written and the failures are listed. Only documents a committed manifest names
//! are replayed (a document of an abandoned flush was written again by the flush
//! that replaced it).
//!
//! The auditor counts a replayed event as delivered and no longer as quarantined.
//!
//! **Batches** kept whole (`_quarantine/<reason>/….bin`: not authentic, unknown key,
//! a type the consumer did not know) are not acked, so their agent sends them again
//! until a consumer can deliver them; if the agent is gone, `evd quarantine replay`
//! produces the batch to its topic again once it opens (`ops/src/cli_quarantine.rs`),
//! and the consumers' ledger delivers it once.

use std::collections::BTreeMap;

use evd_schemas::keys::MasterKeyring;
use evd_schemas::wire::batch::{self, BatchMeta};
use evd_schemas::wire::record::put_record;
use evd_schemas::{Hour, Registry, SpoolId};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Deserialize;

use crate::commit::{CommitError, Output};
use crate::layout;
use crate::ledger::{FileEntry, Manifest};
use crate::parquet_options::ParquetOptions;
use crate::rows::Assembler;

/// The version of a schema-quarantine document's lines. 2 added `version`,
/// `event_type`, `bucket_hour` and `received_at_us` (what a replay needs); lines
/// without `version` are version 1 and cannot be replayed.
pub const QUARANTINE_DOC_VERSION: u32 = 2;

/// The consumer id of replay flushes.
pub const REPLAY_CONSUMER_ID: &str = "quarantine-replay";

/// One line of a schema-quarantine document.
#[derive(Debug, Clone, Deserialize)]
pub struct QuarantinedEvent {
    #[serde(default = "version_1")]
    pub version: u32,
    pub agent_id: String,
    pub spool_id: SpoolId,
    pub batch_seq: u64,
    pub event_seq: u64,
    pub reason: String,
    pub body: String,
    /// Absent in documents written before replay existed: those cannot be replayed.
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub bucket_hour: Option<u32>,
    #[serde(default)]
    pub received_at_us: Option<i64>,
}

fn version_1() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "{0}: no committed manifest names this document (its flush was abandoned and written again)"
    )]
    NotCommitted(String),
    #[error("{doc} line {line}: {why}")]
    Unreadable {
        doc: String,
        line: usize,
        why: String,
    },
    #[error(
        "{doc}: written before quarantine documents carried the receive time; it cannot be replayed"
    )]
    TooOld { doc: String },
    #[error("{doc}: {} events still fail the registry, nothing was written; first: {}", failures.len(), failures.first().map(String::as_str).unwrap_or(""))]
    StillInvalid { doc: String, failures: Vec<String> },
    #[error("sealing for replay: {0}")]
    Seal(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error(transparent)]
    Store(#[from] CommitError),
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),
}

/// What a replay wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub flush_id: String,
    pub events: u64,
    /// The data files, relative to the output prefix.
    pub files: Vec<String>,
}

/// The flush id a document's replay commits under: the same for every replay of it.
pub fn replay_flush_id(doc: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(doc.as_bytes());
    format!("replay-{}", hex::encode(&digest[..8]))
}

/// The document's lines.
pub async fn read_events(output: &Output, doc: &str) -> Result<Vec<QuarantinedEvent>, ReplayError> {
    let bytes = output.store.get(&output.path(doc)).await?.bytes().await?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let unreadable = |why: String| ReplayError::Unreadable {
                doc: doc.to_string(),
                line: i + 1,
                why,
            };
            let event: QuarantinedEvent =
                serde_json::from_str(l).map_err(|e| unreadable(e.to_string()))?;
            if event.version > QUARANTINE_DOC_VERSION {
                return Err(unreadable(format!(
                    "version {} is newer than this evd knows ({QUARANTINE_DOC_VERSION})",
                    event.version
                )));
            }
            Ok(event)
        })
        .collect()
}

/// Every manifest, live or archived, that names `doc` and was not aborted.
async fn committing_manifest(output: &Output, doc: &str) -> Result<Option<Manifest>, ReplayError> {
    for dir in [layout::MANIFESTS_DIR, layout::ARCHIVED_MANIFESTS_DIR] {
        let listed: Vec<object_store::ObjectMeta> = output
            .store
            .list(Some(&output.path(dir)))
            .try_collect()
            .await?;
        for meta in listed {
            let bytes = match output.store.get(&meta.location).await {
                Ok(r) => r.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => continue, // archived meanwhile
                Err(e) => return Err(e.into()),
            };
            if let Ok(m) = Manifest::from_json(&bytes)
                && !m.aborted
                && m.quarantine.iter().any(|q| q == doc)
            {
                return Ok(Some(m));
            }
        }
    }
    Ok(None)
}

/// Where quarantined events came from: (agent, spool, batch seq, type, hour number).
type BatchKey = (String, SpoolId, u64, String, u32);
/// A quarantined record: (event seq, received at µs, body).
type QuarantinedRecord = (u64, i64, Vec<u8>);

/// A batch of one [`BatchKey`] with the quarantined events of it, ready for the
/// consumer's row assembly.
struct Group {
    meta: BatchMeta,
    records: Vec<QuarantinedRecord>,
}

fn groups(doc: &str, events: &[QuarantinedEvent]) -> Result<Vec<Group>, ReplayError> {
    let mut by_batch: BTreeMap<BatchKey, Vec<QuarantinedRecord>> = BTreeMap::new();
    for e in events {
        let (Some(ty), Some(hour), Some(received)) =
            (&e.event_type, e.bucket_hour, e.received_at_us)
        else {
            return Err(ReplayError::TooOld { doc: doc.into() });
        };
        by_batch
            .entry((
                e.agent_id.clone(),
                e.spool_id,
                e.batch_seq,
                ty.clone(),
                hour,
            ))
            .or_default()
            .push((e.event_seq, received, e.body.clone().into_bytes()));
    }
    Ok(by_batch
        .into_iter()
        .map(
            |((agent_id, spool_id, batch_seq, event_type, hour), mut records)| {
                records.sort_by_key(|r| r.0);
                records.dedup_by_key(|r| r.0);
                Group {
                    meta: BatchMeta {
                        agent_id,
                        spool_id,
                        batch_seq,
                        event_type,
                        bucket_hour: Hour(hour),
                        created_at_ms: 0,
                        event_count: records.len() as u32,
                    },
                    records,
                }
            },
        )
        .collect())
}

/// Replays one schema-quarantine document (see the module docs).
pub async fn replay_events(
    output: &Output,
    keys: &MasterKeyring,
    registry: &Registry,
    parquet: &ParquetOptions,
    doc: &str,
) -> Result<Replayed, ReplayError> {
    let Some(original) = committing_manifest(output, doc).await? else {
        return Err(ReplayError::NotCommitted(doc.into()));
    };
    let events = read_events(output, doc).await?;
    let mut assembler = Assembler::default();
    let mut failures = Vec::new();
    for group in groups(doc, &events)? {
        let mut payload = Vec::new();
        for (seq, received, body) in &group.records {
            put_record(&mut payload, *seq, *received, body);
        }
        // Sealed and opened again with the agent's derived key: the rows are built
        // by the consumer's own path from an authentic batch, nothing else.
        let agent_keys = keys.derive_agent_keyring(&group.meta.agent_id);
        let sealed = batch::seal(&agent_keys, &group.meta, &payload, 1)
            .map_err(|e| ReplayError::Seal(e.to_string()))?;
        let opened = batch::open(keys, &sealed).map_err(|e| ReplayError::Seal(e.to_string()))?;
        match assembler.add(registry, &opened, group.meta.bucket_hour) {
            Ok(added) => failures.extend(added.rejected.iter().map(|r| {
                format!(
                    "{}/{} event {}: {}",
                    r.origin, r.batch_seq, r.event_seq, r.reason
                )
            })),
            Err(why) => failures.push(why),
        }
    }
    if !failures.is_empty() {
        return Err(ReplayError::StillInvalid {
            doc: doc.into(),
            failures,
        });
    }
    let flush_id = replay_flush_id(doc);
    let mut files = Vec::new();
    let mut staged = Vec::new();
    let mut rows = 0;
    for (n, f) in assembler.take().into_iter().enumerate() {
        let bytes = crate::parquet_out::encode_with(&f.batch, parquet)
            .map_err(|e| ReplayError::Parquet(e.to_string()))?;
        let staging = layout::staging_file(&flush_id, &format!("{n}.parquet"));
        rows += f.batch.num_rows() as u64;
        files.push(FileEntry {
            staging: staging.clone(),
            final_path: layout::data_file(&f.event_type, f.hour, &flush_id, n),
            event_type: f.event_type,
            hour: f.hour.0,
            rows: f.batch.num_rows() as u64,
            bytes: bytes.len() as u64,
        });
        staged.push((staging, bytes));
    }
    // `created_at_ms` fixed per document too, so that every replay of it is the same
    // flush.
    let mut manifest =
        Manifest::of_files(&flush_id, REPLAY_CONSUMER_ID, original.created_at_ms, files);
    output.commit(&mut manifest, staged).await?;
    Ok(Replayed {
        flush_id: manifest.flush_id.clone(),
        events: rows,
        files: manifest
            .files
            .iter()
            .map(|f| f.final_path.clone())
            .collect(),
    })
}
